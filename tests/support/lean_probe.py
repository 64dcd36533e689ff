"""Run a small ArenaBlocks page in this process and report, as JSON, what arena.ui.lean changed.

``python -m tests.support.lean_probe`` prints one JSON object; tests/test_lean.py runs it in a
subprocess (Gradio launched in-process leaves event loops and sockets unclosed, which the suite's
warnings-as-errors policy would report in unrelated tests).

The page has two chats streamed by one event, one side at a time, the other left out of the
update. Reported: the streamed messages' data as they came over the wire, the final outputs, how
many Chatbots Gradio built during the event, how often the queue's dispatcher looked for work
during a second of idleness, and whether a click still ran with the idle re-check a minute away.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr
import httpx

from arena.ui import lean
from arena.ui.sessions import ArenaBlocks


def _page() -> ArenaBlocks:
    with ArenaBlocks() as blocks:
        chat_a, chat_b = gr.Chatbot(elem_id="chat_a"), gr.Chatbot(elem_id="chat_b")
        note = gr.Markdown("")
        prompt = gr.Textbox(elem_id="prompt")
        go = gr.Button()

        async def stream(text: str) -> AsyncIterator[dict[Any, Any]]:
            a = [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            b = [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            for i in range(3):  # A grows while B waits (left out), then the other way round
                a[1]["content"] += f"a{i} "
                yield {chat_a: a}
            for i in range(3):
                b[1]["content"] += f"b{i} "
                yield {chat_b: b}
            yield {chat_a: a, chat_b: b, note: "done"}

        go.click(stream, [prompt], [chat_a, chat_b, note], api_name="stream")
    return blocks


def _run(url: str, fn_index: int, session: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    with httpx.Client(timeout=120) as http:
        http.post(
            f"{url}/gradio_api/queue/join",
            json={
                "data": ["hi"],
                "fn_index": fn_index,
                "session_hash": session,
                "event_data": None,
                "trigger_id": None,
            },
        ).raise_for_status()
        with http.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    messages.append(message)
                    if message.get("msg") in ("process_completed", "close_stream"):
                        break
    return messages


def main() -> None:
    lean.IDLE_POLL = 60.0  # a missing wake-up would then hang a click for a minute
    blocks = _page()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks.queue()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = str(blocks.local_url).rstrip("/")
    fn_index = next(i for i, fn in blocks.fns.items() if fn.api_name == "stream")

    built = {"n": 0}
    init = gr.Chatbot.__init__

    def counting(self: gr.Chatbot, *args: Any, **kwargs: Any) -> None:
        built["n"] += 1
        init(self, *args, **kwargs)

    polls = {"n": 0}
    length = lean.QuietQueue.__len__

    def counted(self: lean.QuietQueue) -> int:
        polls["n"] += 1
        return length(self)

    gr.Chatbot.__init__ = counting  # type: ignore[method-assign]
    lean.QuietQueue.__len__ = counted  # type: ignore[method-assign]
    try:
        first = _run(url, fn_index, "leanprobe1")
        time.sleep(0.5)
        before = polls["n"]
        time.sleep(1.0)
        idle_polls = polls["n"] - before
        started = time.monotonic()
        second = _run(url, fn_index, "leanprobe2")
        woke_in = time.monotonic() - started
    finally:
        gr.Chatbot.__init__ = init  # type: ignore[method-assign]
        lean.QuietQueue.__len__ = length  # type: ignore[method-assign]
    report = {
        "quiet_queue": isinstance(blocks._queue, lean.QuietQueue),
        "streamed": [m["output"]["data"] for m in first if m.get("msg") == "process_generating"],
        "final": next(m["output"]["data"] for m in first if m.get("msg") == "process_completed"),
        "second_final": next(m["output"]["data"] for m in second if m.get("msg") == "process_completed"),
        "chatbots_built": built["n"],
        "idle_polls": idle_polls,
        "second_seconds": woke_in,
    }
    blocks.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
