"""Run real Gradio servers in a child process and report their per-session memory as JSON.

``python -m tests.support.session_probe CASE`` prints one JSON object. The tests in
tests/test_sessions.py run it in a subprocess: Gradio launched in-process leaves event loops and
sockets unclosed, which the suite's warnings-as-errors policy would report in unrelated tests.

Cases:
``toggle-plain`` / ``toggle-arena``
    A page in miniature with the arena's pattern (one event changes a property, the next sends a
    plain value to the same components), on ``gr.Blocks`` or on ``ArenaBlocks``; ten cycles.
``arena``
    The real arena page over two demo model servers (TGI and OpenAI protocols): battles, then an
    idle sweep, then the same visitor again.
"""

from __future__ import annotations

import datetime
import json
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from gradio_client import Client


def _launch(demo: gr.Blocks) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return str(demo.local_url)


def _sizes(demo: gr.Blocks, session_hash: str) -> list[int]:
    state = demo.state_holder.session_data[session_hash]
    return [len(state.blocks_config.blocks), len(state.config_values)]


def toggle(arena: bool) -> dict[str, Any]:
    from arena.ui.sessions import ArenaBlocks

    blocks_class = ArenaBlocks if arena else gr.Blocks
    with blocks_class() as demo:
        chat = gr.Chatbot()
        box = gr.Textbox()
        lock = gr.Button()
        fill = gr.Button()
        locked = (gr.update(label="locked"), gr.update(interactive=False))
        lock.click(lambda: locked, None, [chat, box], api_name="lock")
        fill.click(lambda: ([{"role": "user", "content": "hi"}], "text"), None, [chat, box], api_name="fill")
    client = Client(_launch(demo), verbose=False)
    for _ in range(10):
        client.predict(api_name="/lock")
        client.predict(api_name="/fill")
    report = {"page": len(demo.default_config.blocks), "session": _sizes(demo, client.session_hash), "cycles": 10}
    client.close()
    demo.close()
    return report


def _refusal(call: Any) -> str:
    try:
        call()
    except Exception as e:  # gradio_client raises AppError with the page's plain message
        return str(e)
    return ""


def arena_page() -> dict[str, Any]:
    from arena.backends.demo import DemoServer
    from arena.storage import Store
    from arena.ui.app import build_page
    from tests.support.services import make_service, openai_spec, tgi_spec

    servers = [
        DemoServer("demo/tgi", token_rate=2000, first_token_delay=0.0).start(),
        DemoServer("demo/oai", token_rate=2000, first_token_delay=0.0).start(),
    ]
    tmp = Path(tempfile.mkdtemp(prefix="session-probe-"))
    service = make_service(
        [tgi_spec("tgi-model", servers[0].url), openai_spec("oai-model", servers[1].url, "demo/oai")],
        Store(f"sqlite:///{tmp / 'arena.sqlite3'}"),
    )
    demo, _texts = build_page(service)
    client = Client(_launch(demo), verbose=False)
    report: dict[str, Any] = {"page": len(demo.default_config.blocks), "sizes": []}

    def battle(n: int) -> None:
        client.predict(f"Question number {n}?", api_name="/send")
        client.predict(api_name="/vote_a")
        client.predict(api_name="/new_round")
        report["sizes"].append(_sizes(demo, client.session_hash))

    client.predict(api_name="/accept_terms")
    for n in range(6):
        battle(n)

    # A second visitor, active now; then an hour and more passes for the first one.
    other = Client(demo.local_url, verbose=False)
    other.predict(api_name="/accept_terms")
    holder = demo.state_holder
    holder.time_last_used[client.session_hash] -= datetime.timedelta(seconds=demo.session_ttl + 1)
    report["forgotten"] = demo.forget_idle_sessions()
    report["first_kept"] = client.session_hash in holder.session_data
    report["other_kept"] = other.session_hash in holder.session_data
    # The first visitor comes back to the same page: plain refusals, then the notice again.
    report["vote_after"] = _refusal(lambda: client.predict(api_name="/vote_a"))
    report["send_after"] = _refusal(lambda: client.predict("Hello again?", api_name="/send"))
    client.predict(api_name="/accept_terms")
    battle(99)
    report["battle_after"] = True

    for c in (client, other):
        c.close()
    demo.close()
    service.store.dispose()
    for server in servers:
        server.stop()
    return report


def main(case: str) -> int:
    cases = {"toggle-plain": lambda: toggle(False), "toggle-arena": lambda: toggle(True), "arena": arena_page}
    print(json.dumps(cases[case]()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
