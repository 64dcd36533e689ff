"""What serving the arena's page changes in this process: done once at start-up, never at import.

:func:`prepare_process` is called by :meth:`arena.app.Arena.start` before Gradio is first imported.
Every change is a measured saving (benchmarks/RESULTS.md) that touches Gradio's private internals,
listed and checked in tests/test_gradio_internals.py against the pinned Gradio (requirements.txt).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from arena.ui import fast_import

__all__ = ["prepare_process"]

# Gradio's queue rebuilds a pandas summary of its last 10,000 events after every event, for a
# monitoring dashboard the arena does not enable: ~7% of the server's CPU under load (py-spy,
# benchmarks/RESULTS.md). Summarise once per 1,000 events and keep the last 1,000. The environment
# still wins (docs/configuration.md).
ANALYTICS_DEFAULTS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000", "GRADIO_ANALYTICS_MAX_EVENTS": "1000"}


def prepare_process(environ: MutableMapping[str, str] | None = None) -> None:
    """Tune this process for serving the page; call it before Gradio is imported. Safe to call again.

    - Gradio skips rewriting its type stubs when it is imported (:func:`fast_import.install`; half
      of ``import gradio``). Once Gradio is imported this no longer applies (and changes nothing).
    - ``import matplotlib`` fails at once when it is not installed (:func:`fast_import.mark_absent`;
      Gradio tries it twice per event).
    - The ``GRADIO_ANALYTICS_*`` defaults above go into ``environ`` (``os.environ``) where unset;
      Gradio's queue reads them when the page is built.
    - Every component class's ``__init__`` gets its signature computed once
      (:func:`fast_import.cache_signatures`), after importing the page's modules, which define
      component classes of their own.
    """
    environ = os.environ if environ is None else environ
    fast_import.install()
    fast_import.mark_absent("matplotlib")
    for name, value in ANALYTICS_DEFAULTS.items():
        environ.setdefault(name, value)
    from gradio.blocks import Block

    import arena.ui.app  # noqa: F401  (its modules define component classes: cache theirs too)

    fast_import.cache_signatures(Block)
