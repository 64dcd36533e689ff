"""The only code that imports Gradio.

Importing this package (or any module in it) changes nothing in the process. The app calls
:func:`arena.ui.runtime.prepare_process` once at start-up, before Gradio is first imported, and
then builds the page with :func:`arena.ui.app.build_ui` (:class:`arena.app.Arena` does both).
"""
