"""The Gradio page: battle tab and leaderboard tab; handlers return dicts keyed by component."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import gradio as gr

from arena.domain import Answer, Message, Winner
from arena.errors import ArenaError
from arena.service import ArenaService, BattleSession, Reveal, TurnView, user_text
from arena.ui.leaderboard import build_leaderboard_tab

log = logging.getLogger(__name__)

TITLE = "LLM Arena"
INTRO = (
    "Ask anything. Two anonymous models answer side by side; vote for the better answer. "
    "The models' names are revealed after your vote."
)

VOTES: tuple[tuple[str, str, Winner], ...] = (
    ("vote_a", "A is better", "model_a"),
    ("vote_b", "B is better", "model_b"),
    ("vote_tie", "Tie", "tie"),
    ("vote_bothbad", "Both are bad", "tie (bothbad)"),
)

CSS = """
#chat_a, #chat_b { min-height: 380px; }
#reveal { text-align: center; }
"""


def _client_key(request: gr.Request | None) -> str:
    if request is None:
        return "anonymous"
    host = request.client.host if request.client else "unknown"
    return f"{host}|{request.session_hash}"


def _chat(history: list[Message], answer: Answer | None) -> list[dict[str, str]]:
    """The messages one panel shows: the finished turns plus the answer in progress."""
    messages = [{"role": m["role"], "content": m["content"]} for m in history if m["role"] != "system"]
    if answer is None:
        return messages
    if messages and messages[-1]["role"] == "user":
        messages.append({"role": "assistant", "content": answer.text})
    if answer.error and messages and messages[-1]["role"] == "assistant":
        shown = messages[-1]["content"]
        messages[-1]["content"] = (shown + "\n\n" if shown else "") + f"⚠️ {answer.error}"
    return messages


def build_ui(service: ArenaService) -> gr.Blocks:
    """Build the arena page around ``service`` (the page holds no other state)."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Battle", id="battle"):
                with gr.Row(equal_height=True):
                    chat_a = gr.Chatbot(
                        label="Model A", elem_id="chat_a", feedback_options=None, height=420, buttons=["copy"]
                    )
                    chat_b = gr.Chatbot(
                        label="Model B", elem_id="chat_b", feedback_options=None, height=420, buttons=["copy"]
                    )
                reveal = gr.Markdown("", elem_id="reveal")
                notice = gr.Markdown("", elem_id="notice")
                with gr.Row():
                    vote_buttons = {
                        winner: gr.Button(label, elem_id=elem, interactive=False, variant="secondary")
                        for elem, label, winner in VOTES
                    }
                with gr.Row():
                    prompt = gr.Textbox(
                        show_label=False,
                        placeholder="Type your prompt and press Enter",
                        elem_id="prompt",
                        scale=8,
                        max_lines=8,
                        lines=1,
                        autofocus=True,
                    )
                    send = gr.Button("Send", variant="primary", elem_id="send", scale=1, min_width=90)
                with gr.Row():
                    regenerate = gr.Button("Regenerate", elem_id="regenerate", interactive=False)
                    new_round = gr.Button("New round", elem_id="new_round")
            build_leaderboard_tab(service)

        votes = list(vote_buttons.values())
        outputs = [state, chat_a, chat_b, prompt, send, regenerate, reveal, notice, *votes]

        def controls(*, can_vote: bool, can_send: bool, can_regenerate: bool) -> dict[Any, Any]:
            update: dict[Any, Any] = {b: gr.update(interactive=can_vote) for b in votes}
            update[prompt] = gr.update(interactive=can_send)
            update[send] = gr.update(interactive=can_send)
            update[regenerate] = gr.update(interactive=can_regenerate)
            return update

        def render(session: BattleSession, view: TurnView, *, clear_prompt: bool = False) -> dict[Any, Any]:
            update = controls(
                can_vote=view.can_vote,
                can_send=not view.streaming and session.status == "ready",
                can_regenerate=not view.streaming and session.status in ("ready", "failed"),
            )
            update[state] = session
            update[chat_a] = _chat(view.history[0], view.answers[0])
            update[chat_b] = _chat(view.history[1], view.answers[1])
            update[notice] = "\n\n".join(f"ℹ️ {n}" for n in view.notices)
            if clear_prompt:
                update[prompt] = gr.update(value="", interactive=False)
            return update

        async def stream(session: BattleSession, views: AsyncIterator[TurnView]) -> AsyncIterator[dict[Any, Any]]:
            first = True
            try:
                async for view in views:
                    yield render(session, view, clear_prompt=first)
                    first = False
            except ArenaError as e:
                if first:
                    raise gr.Error(user_text(e), print_exception=False) from None
                failed = controls(can_vote=False, can_send=False, can_regenerate=session.status == "failed")
                yield {**failed, state: session, notice: f"⚠️ {user_text(e)}"}

        async def on_send(
            text: str, session: BattleSession | None, request: gr.Request
        ) -> AsyncIterator[dict[Any, Any]]:
            try:
                if session is None:
                    session = service.new_session(_client_key(request))
                views = service.send(session, text)
            except ArenaError as e:
                raise gr.Error(user_text(e), print_exception=False) from None
            async for update in stream(session, views):
                yield update

        async def on_regenerate(session: BattleSession | None) -> AsyncIterator[dict[Any, Any]]:
            if session is None:
                raise gr.Error("There is no answer to regenerate yet.", print_exception=False)
            async for update in stream(session, service.regenerate(session)):
                yield update

        def make_vote(winner: Winner) -> Callable[[BattleSession | None], Awaitable[dict[Any, Any]]]:
            async def on_vote(session: BattleSession | None) -> dict[Any, Any]:
                try:
                    result: Reveal = await service.vote(session, winner)
                except ArenaError as e:
                    raise gr.Error(user_text(e), print_exception=False) from None
                update = controls(can_vote=False, can_send=False, can_regenerate=False)
                update[state] = session
                update[reveal] = (
                    f"### Model A: **{result.model_a}** · Model B: **{result.model_b}**\n"
                    "Thank you, your vote is saved. Press “New round” for another battle."
                )
                update[notice] = ""
                return update

            return on_vote

        def on_new_round(request: gr.Request) -> dict[Any, Any]:
            update = controls(can_vote=False, can_send=True, can_regenerate=False)
            update.update(
                {chat_a: [], chat_b: [], reveal: "", notice: "", prompt: gr.update(value="", interactive=True)}
            )
            try:
                update[state] = service.new_session(_client_key(request))
            except ArenaError as e:
                update[state] = None
                update[notice] = f"⚠️ {user_text(e)}"
            return update

        send_event = gr.on(
            [send.click, prompt.submit],
            on_send,
            inputs=[prompt, state],
            outputs=outputs,
            api_name="send",
            show_progress="hidden",
        )
        regen_event = regenerate.click(
            on_regenerate, inputs=[state], outputs=outputs, api_name="regenerate", show_progress="hidden"
        )
        for elem, _label, winner in VOTES:
            vote_buttons[winner].click(
                make_vote(winner), inputs=[state], outputs=outputs, api_name=elem, show_progress="hidden"
            )
        new_round.click(
            on_new_round,
            inputs=None,
            outputs=outputs,
            api_name="new_round",
            cancels=[send_event, regen_event],
            show_progress="hidden",
        )
    return demo
