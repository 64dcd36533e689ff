"""The only code that imports Gradio."""

import os

from arena.ui import fast_import

fast_import.install()  # before the first `import gradio` (see arena/ui/fast_import.py)
fast_import.mark_absent("matplotlib")  # Gradio tries to import it twice per event

# Gradio's queue rebuilds a pandas summary of its last 10,000 events after every event, for a
# monitoring dashboard the arena does not enable: ~7% of the server's CPU under load (py-spy,
# benchmarks/RESULTS.md). Summarise once per 1,000 events and keep the last 1,000. The environment
# still wins (docs/configuration.md).
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")

from gradio.blocks import Block  # noqa: E402  (imported by arena.ui.app above)

from arena.ui.app import build_ui  # noqa: E402

fast_import.cache_signatures(Block)  # every component class Gradio and arena.ui define (fast_import.py)

__all__ = ["build_ui"]
