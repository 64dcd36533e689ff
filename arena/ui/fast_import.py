"""Import Gradio without rewriting its type stubs (half of Gradio's import time).

Gradio 6.31 regenerates the ``.pyi`` stub of every component class each time it is imported
(``gradio.component_meta.create_or_modify_pyi``: parse the module's source, render a Jinja
template, compare with the file on disk). Stubs serve editors and type checkers, and the wheel ships
them already; a server has no use for the work, which took 1.2-1.5 s of a 2.5-2.9 s
``import gradio`` on a quiet 2-core machine (benchmarks/RESULTS.md, "Start-up and footprint").

:func:`install` makes that one function a no-op when ``gradio.component_meta`` is first loaded.
Nothing else of Gradio changes. If Gradio is already imported, or no longer has the function, it
does nothing.

:func:`mark_absent` serves the same purpose at run time: Gradio wraps every event in
``MatplotlibBackendMananger``, which tries ``import matplotlib`` on entry and on exit. The arena does
not install matplotlib, so each try searched every ``sys.path`` entry again (~2.5% of the server's
CPU at 64 visitors, py-spy; benchmarks/RESULTS.md).

:func:`cache_signatures` serves it too: every ``gr.update`` of a component makes Gradio build a new
component and its config, which calls ``inspect.signature`` on the class's ``__init__`` twice
(``inspect.getfullargspec`` in ``component_meta.updateable``, ``Block.get_config``), each time
from scratch. Python returns a function's ``__signature__`` attribute when it has one, so setting it
once per class gives the same signature without the work.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["cache_signatures", "install", "mark_absent"]

_MODULE = "gradio.component_meta"
_FUNCTION = "create_or_modify_pyi"


def _skip_stub(*_args: Any, **_kwargs: Any) -> None:
    """Stand-in for Gradio's stub writer: the installed stubs stay as shipped."""


class _StubSkipper(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = spec.loader if spec is not None else None
        if spec is None or not isinstance(loader, importlib.abc.Loader) or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if callable(getattr(module, _FUNCTION, None)):
                setattr(module, _FUNCTION, _skip_stub)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> bool:
    """Skip Gradio's stub rewriting from now on; False when Gradio is already imported."""
    if _MODULE in sys.modules:
        return False
    if not any(isinstance(f, _StubSkipper) for f in sys.meta_path):
        sys.meta_path.insert(0, _StubSkipper())
    return True


def mark_absent(name: str) -> bool:
    """Make ``import name`` fail at once when the package is not installed; False if it is.

    A ``None`` entry in ``sys.modules`` is Python's own way to say "not importable": the import
    raises ImportError without searching the path. An installed package is left alone.
    """
    if name in sys.modules:
        return sys.modules[name] is None
    if importlib.util.find_spec(name) is not None:
        return False
    sys.modules[name] = None  # type: ignore[assignment]
    return True


def cache_signatures(base: type) -> int:
    """Give the ``__init__`` of ``base`` and of every subclass its own computed ``__signature__``.

    Returns how many were set. ``inspect.signature`` (and ``getfullargspec``) then return that
    object, identical to what they would compute; a function that already has one is left alone.
    """
    done = 0
    seen: set[type] = set()
    stack = [base]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        init = cls.__dict__.get("__init__")
        target = getattr(init, "__wrapped__", init)
        if inspect.isfunction(target) and "__signature__" not in target.__dict__:
            target.__signature__ = inspect.signature(target)  # type: ignore[attr-defined]
            done += 1
    return done
