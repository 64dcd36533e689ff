"""The Gradio page: language, terms notice, battle, side-by-side and leaderboard tabs.

Language: the page is rendered on the server from the catalogs in ``arena/i18n``. On load, the
visitor's language is taken from ``?lang=``, else the choice they made here before (browser
storage), else the browser's ``Accept-Language``, else ``ARENA_DEFAULT_LANGUAGE``; the selector at
the top re-renders every text (see :class:`arena.ui.texts.Texts`). Errors, notices and the
reveal are produced in the visitor's language by the handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import gradio as gr

from arena import i18n
from arena.campaigns.service import CampaignService
from arena.pairing import can_pair
from arena.service import ArenaService
from arena.ui.campaign import build_campaign_results, build_campaign_tab
from arena.ui.guard import RequestGuard, SessionBinding
from arena.ui.inputs import make_input_check
from arena.ui.leaderboard import build_leaderboard_tab
from arena.ui.panel import Panel, build_panel
from arena.ui.sessions import ArenaBlocks
from arena.ui.status import build_status_tab
from arena.ui.texts import Texts, Visitor, refusal

__all__ = ["CSS", "build_page", "build_ui"]

log = logging.getLogger(__name__)

CSS = """
#terms { border: 2px solid var(--color-accent); border-radius: var(--radius-lg); padding: var(--spacing-lg); }
#models_banner { border-left: 6px solid #d97706; background: #fffbeb; color: #78350f; padding: 8px 14px; }
.arena-header h1 { margin-bottom: 0.2em; }
.arena-reveal { text-align: center; }
.arena-reveal table { margin: 0 auto; }
/* A refused prompt fails the streaming event, and Gradio then covers both chats with an English
   "Error" badge; the toast already says what happened, in the visitor's language. */
.arena-chat .wrap:has(> .error) { display: none !important; }
.gradio-container button:focus-visible,
.gradio-container textarea:focus-visible,
.gradio-container input:focus-visible,
.gradio-container [role="tab"]:focus-visible {
  outline: 3px solid #2563eb !important;
  outline-offset: 2px;
}
@media (max-width: 720px) {
  /* Phones: the two answers one above the other, the vote buttons two per line. */
  .arena-chats, .arena-top { flex-direction: column !important; }
  .arena-top > * { width: 100% !important; }
  /* Columns share a row's width with flex-basis 0; stacked, that basis would be their height. */
  .arena-chats > * { flex: none !important; }
  .arena-chats > * { width: 100% !important; min-width: 0 !important; }
  .arena-votes > * { flex: 1 1 40% !important; min-width: 0 !important; }
}
"""

LANGUAGE_STORAGE_KEY = "arena-language"


def _language_choices() -> list[tuple[str, str]]:
    return [(i18n.text(code, "language.name"), code) for code in i18n.LANGUAGES]


def _pick_language(saved: str | None, request: gr.Request | None, default: str) -> str:
    if request is not None:
        asked = i18n.normalise(request.query_params.get("lang"))
        if asked:
            return asked
    # Browser storage is the client's to write: anything but a language tag is ignored.
    remembered = i18n.normalise(saved) if isinstance(saved, str) else None
    if remembered:
        return remembered
    header = request.headers.get("accept-language") if request is not None else None
    return i18n.negotiate(header, default)


def _can_battle(service: ArenaService) -> bool:
    """Whether some pool has a possible pair (otherwise pairing raises NotEnoughModels)."""
    return can_pair(service.playable_models())


def build_ui(service: ArenaService, campaigns: CampaignService | None = None) -> gr.Blocks:
    """Build the arena page around ``service`` (the page holds no other state)."""
    return build_page(service, campaigns)[0]


def build_page(service: ArenaService, campaigns: CampaignService | None = None) -> tuple[gr.Blocks, Texts]:
    """The page and the bindings of its texts (tests check every visible text is bound)."""
    settings = service.settings
    default = settings.default_language
    texts = Texts(default)
    page_title = settings.title or i18n.text(default, "app.title")

    def header(language: str) -> str:
        title = settings.title or i18n.text(language, "app.title")
        description = settings.description or i18n.text(language, "app.description")
        return f"# {title}\n{description}"

    def terms_text(language: str) -> str:
        return f"### {i18n.text(language, 'terms.heading')}\n\n{settings.terms or i18n.text(language, 'terms.text')}"

    with ArenaBlocks(title=page_title, session_ttl=settings.session_ttl) as demo:
        visitor = gr.State(Visitor(default))
        saved_language = gr.BrowserState(None, storage_key=LANGUAGE_STORAGE_KEY)
        with gr.Row(equal_height=True, elem_classes=["arena-top"]):
            texts.bind(gr.Markdown(elem_id="header", elem_classes=["arena-header"]), value=header)
            language = texts.bind(
                gr.Dropdown(
                    choices=_language_choices(),
                    value=default,
                    elem_id="language",
                    interactive=True,
                    scale=0,
                    min_width=160,
                ),
                label="app.language",
            )
        banner = texts.bind(
            gr.Markdown(elem_id="models_banner", visible=not _can_battle(service)), value="app.no_models"
        )
        with gr.Column(elem_id="terms") as terms_box:
            texts.bind(gr.Markdown(elem_id="terms_text"), value=terms_text)
            accept = texts.bind(gr.Button(variant="primary", elem_id="accept_terms"), value="terms.agree")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab(id="battle", elem_id="battle_tab") as battle_tab:
                battle = build_panel(service, texts, visitor, mode="anonymous", prefix="")
            with gr.Tab(id="sbs", elem_id="sbs_tab") as sbs_tab:
                sbs = build_panel(service, texts, visitor, mode="named", prefix="sbs_")
            campaign_tab = build_campaign_tab(campaigns, texts, visitor) if campaigns is not None else None
            leaderboard_tab = build_leaderboard_tab(service, texts, visitor)
            if campaigns is not None:
                with leaderboard_tab:
                    build_campaign_results(campaigns, texts, visitor, leaderboard_tab)
            build_status_tab(service, texts, visitor)
        texts.bind(battle_tab, label="tab.battle")
        texts.bind(sbs_tab, label="tab.sbs")
        texts.bind(leaderboard_tab, label="tab.leaderboard")
        if campaign_tab is not None:
            texts.bind(campaign_tab, label="tab.campaign")
        panels = (battle, sbs)
        _wire_page(demo, service, texts, visitor, saved_language, language, banner, terms_box, accept, panels)
    _guard(demo, service, visitor)
    return demo, texts


def _guard(demo: ArenaBlocks, service: ArenaService, visitor: gr.State) -> None:
    """Input limits before every event, and the HTTP guard in front of Gradio's routes (see SECURITY.md)."""
    settings = service.settings
    binding = SessionBinding(2 * settings.session_capacity)

    def language_of(state: Any, request: Any) -> str:
        who = getattr(state, "state_data", {}).get(visitor._id)
        if isinstance(who, Visitor):
            return who.language
        headers = getattr(request, "headers", None) or {}
        return i18n.negotiate(headers.get("accept-language"), settings.default_language)

    def unexpected(state: Any, request: Any) -> Exception:
        return refusal(language_of(state, request), i18n.text(language_of(state, request), "msg.generic"))

    demo.unexpected = unexpected
    demo.checks.append(make_input_check(language_of=language_of, visitor_key=service.visitor_key, binding=binding))

    def known_event(fn_index: object) -> bool:
        fn = demo.fns.get(fn_index) if isinstance(fn_index, int) else None
        return fn is not None and fn.fn is not None

    def message(key: str, headers: Mapping[str, str]) -> str:
        return i18n.text(i18n.negotiate(headers.get("accept-language"), settings.default_language), key)

    guard: dict[str, Any] = {
        "max_body": settings.max_request_bytes,
        "visitor_key": service.visitor_key,
        "binding": binding,
        "known_event": known_event,
        "message": message,
    }
    demo.middleware.append((RequestGuard, guard))


def _wire_page(
    demo: gr.Blocks,
    service: ArenaService,
    texts: Texts,
    visitor: gr.State,
    saved_language: gr.BrowserState,
    language: gr.Dropdown,
    banner: gr.Markdown,
    terms_box: gr.Column,
    accept: gr.Button,
    panels: tuple[Panel, ...],
) -> None:
    default = texts.default
    pickers = [picker for panel in panels for picker in (panel.pickers or ())]
    page_outputs = [visitor, saved_language, language, *texts.blocks]
    sending = [c for panel in panels for c in (panel.prompt, panel.send)]

    def relabel(who: Visitor, code: str) -> dict[Any, Any]:
        who.language = code
        update = texts.updates(code)
        update[language] = {**update[language], "value": code}  # its label is a bound text too
        return {**update, visitor: who}

    def on_load(saved: str | None, who: Visitor, request: gr.Request) -> dict[Any, Any]:
        update = relabel(who, _pick_language(saved, request, default))
        names = [m.name for m in service.playable_models()]
        for i, picker in enumerate(pickers):
            update[picker] = gr.update(choices=names, value=names[i % 2] if len(names) > 1 else None)
        update[banner] = gr.update(value=texts.t(who.language, "app.no_models"), visible=not _can_battle(service))
        return update

    def on_language(code: str, who: Visitor) -> dict[Any, Any]:
        chosen = i18n.normalise(code) or default
        return {**relabel(who, chosen), saved_language: chosen}

    def on_accept(who: Visitor) -> dict[Any, Any]:
        who.accepted_terms = True
        update: dict[Any, Any] = {visitor: who, terms_box: gr.Column(visible=False)}
        for panel in panels:
            update.update(panel.enable_sending())
        return update

    def show_terms(who: Visitor) -> dict[Any, Any]:
        # A visitor whose session was forgotten (ARENA_SESSION_TTL) must agree again; the notice
        # was hidden on this page, so a refused send brings it back.
        return {terms_box: gr.Column(visible=not who.accepted_terms)}

    for panel in panels:
        panel.send_event.failure(
            show_terms, inputs=[visitor], outputs=[terms_box], api_visibility="private", show_progress="hidden"
        )

    set_lang = "(code) => { if (code) document.documentElement.lang = code; }"
    demo.load(
        on_load, inputs=[saved_language, visitor], outputs=[*page_outputs, *pickers], api_visibility="private"
    ).then(None, inputs=[language], js=set_lang)
    language.input(on_language, inputs=[language, visitor], outputs=page_outputs, api_visibility="private").then(
        None, inputs=[language], js=set_lang
    )
    accept.click(on_accept, inputs=[visitor], outputs=[visitor, terms_box, *sending], api_name="accept_terms")
