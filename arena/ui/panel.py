"""One battle panel (chats, votes, prompt) and its handlers, shared by the battle and side-by-side tabs.

The anonymous battle tab and the named side-by-side tab are the same panel built twice: only the
mode (who picks the models) and the prefix of element ids and API names differ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr

from arena import i18n, messages
from arena.domain import Answer, Message, Winner
from arena.errors import ArenaError, PromptRejected
from arena.service import CONTINUATION_NOTICE, Allowed, ArenaService, BattleSession, Reveal, SideStats, TurnView
from arena.ui.markup import inert
from arena.ui.texts import Texts, Visitor, error, message, refusal

__all__ = ["FOCUS_PROMPT", "LATEX", "VOTES", "Panel", "build_panel", "client_key", "reveal_dict"]

VOTES: tuple[tuple[str, str, Winner], ...] = (
    ("vote_a", "vote.a", "model_a"),
    ("vote_b", "vote.b", "model_b"),
    ("vote_tie", "vote.tie", "tie"),
    ("vote_bothbad", "vote.bothbad", "tie (bothbad)"),
)

# $...$ as well as $$...$$ and the LaTeX brackets: models write all of them.
LATEX: list[dict[str, str | bool]] = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "\\[", "right": "\\]", "display": True},
    {"left": "\\(", "right": "\\)", "display": False},
    {"left": "$", "right": "$", "display": False},
]

Mode = Literal["anonymous", "named"]

# Runs in the browser: focus the prompt box of the tab on screen once it can be typed in (after
# "I agree" and "New round").
FOCUS_PROMPT = """
() => {
  let tries = 40;
  const focus = () => {
    const box = ['#prompt textarea', '#sbs_prompt textarea']
      .map((s) => document.querySelector(s)).find((el) => el && el.offsetParent !== null);
    if (box && !box.disabled) { box.focus(); return; }
    if (--tries > 0) setTimeout(focus, 50);
  };
  focus();
}
"""


def client_key(service: ArenaService, request: gr.Request | None) -> str:
    """Who the visitor is for rate limits (their address, proxy-aware; see ``ArenaService.visitor_key``)."""
    if request is None:
        return "anonymous"
    peer = request.client.host if request.client else None
    return service.visitor_key(peer, request.headers)


def _chat(history: list[Message], answer: Answer | None, language: str) -> list[dict[str, str]]:
    """The messages one panel shows: the finished turns plus the answer in progress."""
    messages = [{"role": m["role"], "content": inert(m["content"])} for m in history if m["role"] != "system"]
    if answer is None:
        return messages
    if messages and messages[-1]["role"] == "user":
        messages.append({"role": "assistant", "content": inert(answer.text)})
    if answer.error and messages and messages[-1]["role"] == "assistant":
        shown = messages[-1]["content"]
        warning = i18n.render(answer.error, language)
        messages[-1]["content"] = (shown + "\n\n" if shown else "") + f"⚠️ {warning}"
    return messages


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(language: str, value: float, digits: int) -> str:
    return f"{value:.{digits}f}".replace(".", i18n.text(language, "format.decimal_separator"))


def reveal_markdown(language: str, result: Reveal) -> str:
    """The names, each side's speed and cut-off, any flag that voids the vote, and thanks."""
    t = i18n.text
    lines = ["### " + t(language, "reveal.names", a=_cell(result.model_a), b=_cell(result.model_b)), ""]
    if result.sides is not None:
        a, b = result.sides

        def ttft(s: SideStats) -> str:
            if s.ttft is None:
                return t(language, "reveal.unknown")
            return t(language, "reveal.seconds", value=_number(language, s.ttft, 2))

        def rate(s: SideStats) -> str:
            return (
                t(language, "reveal.unknown")
                if s.tokens_per_second is None
                else _number(language, s.tokens_per_second, 1)
            )

        def cut(s: SideStats) -> str:
            return t(language, "reveal.yes" if s.cut_off else "reveal.no")

        lines += [
            f"| | {t(language, 'chat.a')}: {_cell(a.model)} | {t(language, 'chat.b')}: {_cell(b.model)} |",
            "|---|---|---|",
            f"| {t(language, 'reveal.ttft')} | {ttft(a)} | {ttft(b)} |",
            f"| {t(language, 'reveal.tps')} | {rate(a)} | {rate(b)} |",
            f"| {t(language, 'reveal.cut_off')} | {cut(a)} | {cut(b)} |",
            "",
        ]
    for flag in result.flags:
        key = f"flag.{flag}" if f"flag.{flag}" in i18n.catalog(i18n.REFERENCE) else "flag.other"
        lines += [f"⚠️ {t(language, key)}", ""]
    lines.append(t(language, "reveal.thanks"))
    return "\n".join(lines)


def reveal_dict(language: str, result: Reveal) -> dict[str, Any]:
    """The reveal as an API client reads it (``/vote_a`` ... ``/vote_bothbad``): plain JSON values.

    ``counted`` is False when a flag keeps the vote out of the ratings; ``notes`` says why, in the
    visitor's language (English for API clients unless ``ARENA_DEFAULT_LANGUAGE`` says otherwise).
    """
    known = i18n.catalog(i18n.REFERENCE)
    sides = [
        {"model": s.model, "ttft_s": s.ttft, "tokens_per_second": s.tokens_per_second, "cut_off": s.cut_off}
        for s in (result.sides or ())
    ]
    return {
        "model_a": result.model_a,
        "model_b": result.model_b,
        "winner": result.winner,
        "counted": not result.flags,
        "flags": list(result.flags),
        "notes": [i18n.text(language, f"flag.{f}" if f"flag.{f}" in known else "flag.other") for f in result.flags],
        "sides": sides,
    }


@dataclass
class Panel:
    """The components of one battle panel (ids and API names start with ``prefix``)."""

    mode: Mode
    prefix: str
    session: gr.State
    chat_a: gr.Chatbot
    chat_b: gr.Chatbot
    reveal: gr.Markdown
    notice: gr.Markdown
    votes: dict[Winner, gr.Button]
    reason: gr.Textbox
    prompt: gr.Textbox
    send: gr.Button
    regenerate: gr.Button
    new_round: gr.Button
    pickers: tuple[gr.Dropdown, gr.Dropdown] | None
    # The streaming event of "Send", once wired (the page chains its own steps after it).
    send_event: Any = None

    def enable_sending(self) -> dict[Any, Any]:
        """Updates that let the visitor type (once the terms are accepted)."""
        return {self.prompt: gr.update(interactive=True), self.send: gr.update(interactive=True)}


def build_panel(service: ArenaService, texts: Texts, visitor: gr.State, *, mode: Mode, prefix: str) -> Panel:
    """Lay out one panel inside the current tab and wire its events (API names ``{prefix}send`` ...)."""
    p = prefix
    named = mode == "named"
    texts.bind(
        gr.Markdown(elem_id=f"{p}intro", elem_classes=["arena-intro"]), value="sbs.intro" if named else "battle.intro"
    )
    pickers: tuple[gr.Dropdown, gr.Dropdown] | None = None
    if named:
        # Empty in the page config (which names no model); the page's load event fills them in.
        with gr.Row(elem_classes=["arena-pickers"]):
            pickers = (
                texts.bind(
                    gr.Dropdown(
                        choices=[],
                        value=None,
                        elem_id=f"{p}model_a",
                        interactive=True,
                        min_width=160,
                        allow_custom_value=True,  # API callers name models; the service checks them
                    ),
                    label="sbs.model_a",
                ),
                texts.bind(
                    gr.Dropdown(
                        choices=[],
                        value=None,
                        elem_id=f"{p}model_b",
                        interactive=True,
                        min_width=160,
                        allow_custom_value=True,  # API callers name models; the service checks them
                    ),
                    label="sbs.model_b",
                ),
            )
    session = gr.State(None)
    with gr.Row(equal_height=True, elem_classes=["arena-chats"]):
        chats = tuple(
            texts.bind(
                gr.Chatbot(
                    elem_id=f"{p}chat_{side}",
                    elem_classes=["arena-chat"],
                    feedback_options=None,
                    height=460,
                    buttons=["copy"],
                    latex_delimiters=LATEX,
                    min_width=280,
                ),
                label=f"chat.{side}",
            )
            for side in ("a", "b")
        )
    chat_a, chat_b = chats
    reveal = gr.Markdown("", elem_id=f"{p}reveal", elem_classes=["arena-reveal"])
    notice = gr.Markdown("", elem_id=f"{p}notice", elem_classes=["arena-notice"])
    with gr.Row(elem_classes=["arena-votes"]):
        vote_buttons: dict[Winner, gr.Button] = {
            winner: texts.bind(
                gr.Button(elem_id=f"{p}{elem}", interactive=False, variant="secondary", min_width=120), value=key
            )
            for elem, key, winner in VOTES
        }
    reason = texts.bind(
        gr.Textbox(
            elem_id=f"{p}reason",
            lines=1,
            max_lines=3,
            value="",
            elem_classes=["arena-reason"],
            max_length=service.settings.max_reason_chars,
        ),
        label="vote.reason",
        placeholder="vote.reason_placeholder",
    )
    with gr.Row(elem_classes=["arena-prompt-row"]):
        prompt = texts.bind(
            gr.Textbox(
                show_label=False,
                elem_id=f"{p}prompt",
                scale=8,
                max_lines=8,
                lines=1,
                max_length=service.settings.max_prompt_chars,
                autofocus=not named,
                interactive=False,  # until the terms are accepted
                min_width=200,
            ),
            placeholder="prompt.placeholder",
        )
        send = texts.bind(
            gr.Button(variant="primary", elem_id=f"{p}send", scale=1, min_width=90, interactive=False),
            value="prompt.send",
        )
    with gr.Row():
        regenerate = texts.bind(gr.Button(elem_id=f"{p}regenerate", interactive=False), value="button.regenerate")
        new_round = texts.bind(gr.Button(elem_id=f"{p}new_round"), value="button.new_round")

    panel = Panel(
        mode, prefix, session, chat_a, chat_b, reveal, notice, vote_buttons, reason, prompt, send, regenerate,
        new_round, pickers,
    )  # fmt: skip
    _wire(service, panel, visitor)
    return panel


def _wire(service: ArenaService, panel: Panel, visitor: gr.State) -> None:
    p = panel.prefix
    state, chat_a, chat_b, prompt = panel.session, panel.chat_a, panel.chat_b, panel.prompt
    votes = list(panel.votes.values())
    outputs = [
        state,
        chat_a,
        chat_b,
        prompt,
        panel.send,
        panel.regenerate,
        panel.reveal,
        panel.notice,
        panel.reason,
        *votes,
    ]
    # A turn is three events: lock the controls (in the browser), stream, settle the controls. Every
    # output an update carries costs server CPU (an output left out costs nothing: arena.ui.lean),
    # so the stream outputs only what changes while it runs, and each update only the chat that changed.
    # The notice the turn ends with travels to the settling event in ``outcome``; every turn that is
    # not refused sets it (None: no notice).
    outcome = gr.State(None)
    # The notice is also an output of the stream itself (set by its final update), so an API client
    # (gradio_client) reading the send endpoint's result gets it too, not only the page.
    stream_outputs = [state, chat_a, chat_b, outcome, panel.notice]
    control_outputs = [prompt, panel.send, panel.regenerate, panel.notice, panel.reason, *votes]
    pickers = list(panel.pickers or ())

    def controls(who: Visitor, session: BattleSession | None) -> dict[Any, Any]:
        """The controls as the service allows them in ``session`` (typing also needs the terms accepted)."""
        allowed: Allowed = service.allowed(session)
        can_send = allowed.send and who.accepted_terms
        update: dict[Any, Any] = {b: gr.update(interactive=allowed.vote) for b in votes}
        update[panel.reason] = gr.update(interactive=allowed.vote)
        update[prompt] = gr.update(interactive=can_send)
        update[panel.send] = gr.update(interactive=can_send)
        update[panel.regenerate] = gr.update(interactive=allowed.regenerate)
        return update

    # Locking the controls while a turn streams runs in the browser: no server event, so the turn's
    # request goes out at once and the server handles one event fewer per turn (issue 7).
    lock_outputs = [prompt, panel.send, panel.regenerate, panel.reason, *votes]
    lock_js = "() => [" + ", ".join(["{__type__: 'update', interactive: false}"] * len(lock_outputs)) + "]"

    def settle(who: Visitor, session: BattleSession | None, ended: str | None) -> dict[Any, Any]:
        """The controls once a turn ended, or was refused (then ``ended`` is None), as the service allows."""
        update = controls(who, session)
        if ended is not None:
            update[panel.notice] = ended
            update[prompt] = {**update[prompt], "value": ""}
        return update

    def settle_refused(who: Visitor, session: BattleSession | None) -> dict[Any, Any]:
        """The controls after a refused turn (``gr.Error``): ``outcome`` may hold an earlier turn's notice."""
        return settle(who, session, None)

    def render(
        session: BattleSession, view: TurnView, language: str, shown: list[tuple[str, messages.Message | None] | None]
    ) -> dict[Any, Any]:
        """One update of the stream: while it streams, only the chat(s) whose answer changed since
        ``shown`` (what the last update showed of each side; updated here). An output left out costs
        nothing (arena.ui.lean), so a side that is waiting costs nothing either."""
        update: dict[Any, Any] = {}
        for i, chat in enumerate((chat_a, chat_b)):
            answer = view.answers[i]
            now = (answer.text, answer.error)
            if not view.streaming or shown[i] != now:
                update[chat] = _chat(view.history[i], answer, language)
                shown[i] = now
        if not view.streaming:
            done = "\n\n".join(f"ℹ️ {i18n.render(n, language)}" for n in view.notices)
            update[state] = session
            update[panel.notice] = done
            update[outcome] = done
        return update

    async def stream(
        session: BattleSession, views: AsyncIterator[TurnView], language: str
    ) -> AsyncIterator[dict[Any, Any]]:
        first = True
        shown: list[tuple[str, messages.Message | None] | None] = [None, None]
        try:
            async for view in views:
                update = render(session, view, language, shown)
                if first:
                    # The turn's state, and no outcome yet: a turn stopped for a new round ends
                    # without a final view and must not leave an earlier turn's notice to settle.
                    update = {state: session, outcome: None, **update}
                elif not update:
                    continue  # nothing visible changed (text held back by a stop string)
                yield update
                first = False
        except ArenaError as e:
            if first:
                raise error(language, e) from None
            warned = f"⚠️ {message(language, e)}"
            yield {state: session, outcome: warned, panel.notice: warned}
            return
        if first:  # nothing streamed: the settling event must not read an earlier turn's outcome
            yield {state: session, outcome: None}

    def start(request: gr.Request, chosen: tuple[str, str] | None) -> BattleSession:
        if panel.mode == "named":
            if chosen is None or not all(chosen):
                # The service's own refusal for a pair it cannot make.
                raise PromptRejected("no models picked", message=messages.Message("msg.pick_two"))
            return service.new_session(client_key(service, request), models=chosen)
        return service.new_session(client_key(service, request))

    async def send(
        text: str, chosen: tuple[str, str] | None, who: Visitor, session: BattleSession | None, request: gr.Request
    ) -> AsyncIterator[dict[Any, Any]]:
        if not who.accepted_terms:
            raise refusal(who.language, i18n.text(who.language, "terms.required"))
        try:
            if session is None or (chosen is not None and session.models != chosen and session.turn == 0):
                session = start(request, chosen)
            views = service.send(session, text or "")  # an API caller may send null
        except ArenaError as e:
            raise error(who.language, e) from None
        async for update in stream(session, views, who.language):
            yield update

    # Two signatures, because Gradio maps inputs to parameters (and names the API's arguments after them).
    async def on_send(
        text: str, who: Visitor, session: BattleSession | None, request: gr.Request
    ) -> AsyncIterator[dict[Any, Any]]:
        async for update in send(text, None, who, session, request):
            yield update

    async def on_send_named(
        text: str, model_a: str, model_b: str, who: Visitor, session: BattleSession | None, request: gr.Request
    ) -> AsyncIterator[dict[Any, Any]]:
        async for update in send(text, (model_a, model_b), who, session, request):
            yield update

    async def on_regenerate(who: Visitor, session: BattleSession | None) -> AsyncIterator[dict[Any, Any]]:
        if session is None:
            raise refusal(who.language, i18n.text(who.language, "msg.nothing_to_regenerate"))
        async for update in stream(session, service.regenerate(session), who.language):
            yield update

    def make_vote(winner: Winner) -> Callable[[str | None, Visitor, BattleSession | None], Awaitable[dict[Any, Any]]]:
        async def on_vote(reason: str | None, who: Visitor, session: BattleSession | None) -> dict[Any, Any]:
            try:
                result: Reveal = await service.vote(session, winner, reason=reason)
            except ArenaError as e:
                raise error(who.language, e) from None
            update = controls(who, session)
            # The chosen button stays marked (and every button disabled) until the next round.
            update[panel.votes[winner]] = gr.update(interactive=False, variant="primary")
            update[state] = session
            update[panel.reveal] = reveal_markdown(who.language, result)
            update[panel.notice] = ""
            return update

        return on_vote

    def new_round(
        who: Visitor,
        chosen: tuple[str, str] | None,
        old: BattleSession | None,
        request: gr.Request,
        *,
        keep_prompt: bool = False,
    ) -> dict[Any, Any]:
        service.abandon(old)  # an API client's running turn stops too (the page cancels its own event)
        update = controls(who, None)
        update.update({b: gr.update(interactive=False, variant="secondary") for b in votes})  # unmark the last vote
        update.update(
            {
                chat_a: [],
                chat_b: [],
                panel.reveal: "",
                panel.notice: "",
                panel.reason: gr.update(value="", interactive=False),
            }
        )
        if not keep_prompt:
            update[prompt] = gr.update(value="", interactive=who.accepted_terms)
        try:
            update[state] = start(request, chosen)
        except ArenaError as e:
            update[state] = None
            update[panel.notice] = f"⚠️ {message(who.language, e)}"
        else:
            if update[state].pairing.pool == "base":  # say it before the visitor writes, not only after
                update[panel.notice] = f"ℹ️ {i18n.render(CONTINUATION_NOTICE, who.language)}"
        return update

    def on_new_round(who: Visitor, old: BattleSession | None, request: gr.Request) -> dict[Any, Any]:
        return new_round(who, None, old, request)

    def on_new_round_named(
        who: Visitor, model_a: str, model_b: str, old: BattleSession | None, request: gr.Request
    ) -> dict[Any, Any]:
        return new_round(who, (model_a, model_b), old, request)

    def on_models_picked(
        who: Visitor, model_a: str, model_b: str, old: BattleSession | None, request: gr.Request
    ) -> dict[Any, Any]:
        # What the visitor has typed stays: the pick may come after the prompt, and a prompt sent
        # while this event was on its way would otherwise be emptied under the send.
        return new_round(who, (model_a, model_b), old, request, keep_prompt=True)

    send_event = gr.on(
        [panel.send.click, prompt.submit],
        None,
        outputs=lock_outputs,
        js=lock_js,
        api_visibility="private",
        show_progress="hidden",
    ).then(
        on_send_named if pickers else on_send,
        inputs=[prompt, *pickers, visitor, state],
        outputs=stream_outputs,
        api_name=f"{p}send",
        show_progress="hidden",
    )
    panel.send_event = send_event
    regen_event = panel.regenerate.click(
        None, outputs=lock_outputs, js=lock_js, api_visibility="private", show_progress="hidden"
    ).then(
        on_regenerate,
        inputs=[visitor, state],
        outputs=stream_outputs,
        api_name=f"{p}regenerate",
        show_progress="hidden",
    )
    for streamed in (send_event, regen_event):
        # A refused turn (gr.Error) must unlock the controls too. Gradio 6's page runs a .then only
        # after success (its docs say always) and a .failure only after an error, so both.
        streamed.then(
            settle,
            inputs=[visitor, state, outcome],
            outputs=control_outputs,
            api_visibility="private",
            show_progress="hidden",
        )
        streamed.failure(
            settle_refused,
            inputs=[visitor, state],
            outputs=control_outputs,
            api_visibility="private",
            show_progress="hidden",
        )
    # Not the chats: a vote leaves them as they are, and an output left out of the returned dict
    # would be rebuilt anyway (a Chatbot's rebuild regenerates its JSON schema: ~15 ms each).
    vote_outputs = [state, *control_outputs, panel.reveal]
    for _elem, _key, winner in VOTES:
        panel.votes[winner].click(
            make_vote(winner),
            inputs=[panel.reason, visitor, state],
            outputs=vote_outputs,
            api_visibility="private",  # the API's votes are their twins below, with a plain result
            show_progress="hidden",
        )
    _wire_api_votes(service, panel, visitor)
    panel.new_round.click(
        on_new_round_named if pickers else on_new_round,
        inputs=[visitor, *pickers, state],
        outputs=outputs,
        api_name=f"{p}new_round",
        cancels=[send_event, regen_event],
        show_progress="hidden",
    ).then(None, js=FOCUS_PROMPT, api_visibility="private")  # the next prompt is typed at once
    if pickers:
        gr.on(
            [picker.input for picker in pickers],
            on_models_picked,
            inputs=[visitor, *pickers, state],
            outputs=outputs,
            api_visibility="private",
            cancels=[send_event, regen_event],
            show_progress="hidden",
        )


def _wire_api_votes(service: ArenaService, panel: Panel, visitor: gr.State) -> None:
    """``/vote_a`` ... ``/vote_bothbad``: API-only twins of the vote buttons that return :func:`reveal_dict`.

    The page's own vote events return updates for a dozen components (the reveal somewhere among
    them); an API client gets one plain dict instead. Each twin hangs on a hidden button that no
    person can press, and votes through the same service call on the same session.
    """
    result = gr.JSON(visible=False)

    def make_api_vote(winner: Winner) -> Callable[..., Awaitable[tuple[BattleSession | None, dict[str, Any]]]]:
        async def vote(
            reason: str | None, who: Visitor, session: BattleSession | None
        ) -> tuple[BattleSession | None, dict[str, Any]]:
            try:
                reveal: Reveal = await service.vote(session, winner, reason=reason)
            except ArenaError as e:
                raise error(who.language, e) from None
            return session, reveal_dict(who.language, reveal)

        return vote

    for elem, _key, winner in VOTES:
        gr.Button("", visible=False).click(  # no text: nobody sees or presses it
            make_api_vote(winner),
            inputs=[panel.reason, visitor, panel.session],
            outputs=[panel.session, result],
            api_name=f"{panel.prefix}{elem}",
            show_progress="hidden",
        )
