"""The Gradio page: language, terms notice, battle, side-by-side and leaderboard tabs.

Language: every bound text (see :class:`arena.ui.texts.Texts`) is rendered on the server in every
language when the page is built, and the page's load event applies the visitor's language in the
browser, without a round trip: ``?lang=``, else the choice they made here before (browser storage),
else the browser's languages, else ``ARENA_DEFAULT_LANGUAGE`` (the rules of
:func:`arena.i18n.normalise`). The page stays hidden until then, so its first paint is already in
the visitor's language; the server learns the language in the step that follows. The selector at
the top switches the same way. Errors, notices and the reveal are produced in the visitor's
language by the handlers; Gradio's toasts title themselves in English ("Error"), so the page
rewrites the title in the page's language as a toast appears.
"""

from __future__ import annotations

import json
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
from arena.ui.panel import FOCUS_PROMPT, Panel, build_panel
from arena.ui.sessions import ArenaBlocks
from arena.ui.status import build_status_tab
from arena.ui.texts import Texts, Visitor, refusal

__all__ = ["CSS", "build_page", "build_ui", "launch_options", "theme"]

log = logging.getLogger(__name__)

# System fonts only (the arena runs offline: nothing is fetched from a font service), each stack
# with real bold faces. Gradio's default theme names a bundled SourceSansPro whose SemiBold face has
# only the glyphs " AB", so bold text mixed two fonts. Latin faces come first on every page, as
# Japanese and Chinese sites do: the CJK faces lack precomposed Polish letters (ą, ć, ż drew as a
# letter plus a loose accent in Noto Sans CJK); then the CJK faces of the page's language (the
# load event sets <html lang>), so its glyph variants win.
LATIN_FONTS = (
    "system-ui",
    "-apple-system",
    "'Segoe UI'",
    "Roboto",
    "'Noto Sans'",
    "'Helvetica Neue'",
    "'Liberation Sans'",
    "Arial",
)
CJK_FONTS = {
    "ja": (
        "'Hiragino Sans'",
        "'Hiragino Kaku Gothic ProN'",
        "'Noto Sans CJK JP'",
        "'Noto Sans JP'",
        "'Yu Gothic UI'",
        "Meiryo",
    ),
    "zh-TW": ("'PingFang TC'", "'Noto Sans CJK TC'", "'Noto Sans TC'", "'Microsoft JhengHei'"),
    "zh-CN": ("'PingFang SC'", "'Noto Sans CJK SC'", "'Noto Sans SC'", "'Microsoft YaHei'"),
}
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "'DejaVu Sans Mono'", "'Liberation Mono'")


EMOJI_FONTS = ("'Apple Color Emoji'", "'Segoe UI Emoji'", "'Noto Color Emoji'")  # the status dots, the ⚠️


def _stack(*families: str) -> str:
    return ", ".join((*families, "sans-serif", *EMOJI_FONTS))


def theme() -> gr.themes.Base:
    """The page's theme: Gradio's default look in system font stacks with real weights."""
    return gr.themes.Default(
        font=[*LATIN_FONTS, *CJK_FONTS["ja"], "sans-serif", *EMOJI_FONTS],
        font_mono=[*MONO_FONTS, "'Noto Sans Mono CJK JP'", "monospace"],
    )


_CJK_CSS = "\n".join(
    f":root:lang({code}) {{ --font: {_stack(*LATIN_FONTS, *fonts)}; }}" for code, fonts in CJK_FONTS.items()
)

CSS = """
/* Until the load event applied the visitor's language (it adds .arena-ready to <html>), the page
   is not shown: no English flash. Should that event never run, it shows after 4 s anyway. */
html:not(.arena-ready) .gradio-container .main { visibility: hidden; animation: arena-show 0s linear 4s forwards; }
@keyframes arena-show { to { visibility: visible; } }
/* Clipped like before, but not a scroll container: overflow: hidden stopped the phone's prompt
   row sticking to the bottom of the screen. (Gradio prefixes rules inside @media with its own
   container, so this one stays outside.) */
.gradio-container { overflow: clip !important; }
/* Plotly names its own typeface ("Open Sans", then Verdana): the plots use the page's. So do the
   tables (Gradio sets them in the monospace face); tabular figures keep the numbers aligned. */
.js-plotly-plot .main-svg text { font-family: var(--font) !important; }
.table-wrap td, .table-wrap th, .table-wrap td *, .table-wrap th * {
  font-family: var(--font) !important; font-variant-numeric: tabular-nums;
}
#terms { border: 2px solid var(--color-accent); border-radius: var(--radius-lg); padding: var(--spacing-lg); }
#models_banner { border-left: 6px solid #d97706; background: #fffbeb; color: #78350f; padding: 8px 14px; }
.arena-header h1 { margin-bottom: 0.2em; }
.arena-reveal { text-align: center; }
.arena-reveal table { margin: 0 auto; }
/* The battle chats have no trash button: emptying one side would leave a vote on answers no longer shown. */
.arena-chat .icon-button-wrapper.top-panel { display: none !important; }
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
  /* Both answers on screen at once while they stream (each scrolls inside), and small until
     there is an answer, so the prompt is in reach right after "I agree". */
  .arena-chat { height: min(460px, 34vh) !important; min-height: 0 !important; }
  .arena-chat:not(:has(.message, [data-testid="user"], [data-testid="bot"])) { height: 88px !important; }
  /* The prompt stays at the bottom of the screen, as in a chat app, wherever the page is scrolled. */
  .arena-prompt-row {
    position: sticky; bottom: 0; z-index: 50; /* above Gradio's labels (40) */
    background: var(--background-fill-primary);
    padding: 6px 0 calc(6px + env(safe-area-inset-bottom, 0px));
    box-shadow: 0 -6px 8px -6px rgba(0, 0, 0, 0.25);
    flex-wrap: nowrap !important;
  }
  .arena-prompt-row > * { min-width: 0 !important; }
  .arena-prompt-row > button { flex: 0 0 auto !important; width: auto !important; }
  /* The leaderboard: headers break between words only, the table scrolls sideways inside its
     frame instead of squeezing its columns, and the plots keep their titles. */
  .table-wrap th, .table-wrap th * { word-break: keep-all !important; overflow-wrap: normal !important; }
  #leaderboard_table table, #campaign_results_table table { min-width: 520px; }
  .row:has(> #leaderboard_win_rates), .row:has(> #leaderboard_battle_counts) { flex-direction: column !important; }
  .js-plotly-plot .gtitle { font-size: 12px !important; }

  .tab-container[role="tablist"] button { padding-left: 10px !important; padding-right: 10px !important; }
}
"""
CSS += _CJK_CSS + "\n"


def launch_options() -> dict[str, Any]:
    """What ``launch()`` needs for the page to look as designed (theme and style sheet)."""
    return {"theme": theme(), "css": CSS}


LANGUAGE_STORAGE_KEY = "arena-language"


def _language_choices() -> list[tuple[str, str]]:
    return [(i18n.text(code, "language.name"), code) for code in i18n.LANGUAGES]


def _pick_language(request: gr.Request | None, default: str) -> str:
    """The language for a client whose browser did not choose one (``?lang=``, else Accept-Language)."""
    if request is not None:
        asked = i18n.normalise(request.query_params.get("lang"))
        if asked:
            return asked
    header = request.headers.get("accept-language") if request is not None else None
    return i18n.negotiate(header, default)


def _can_battle(service: ArenaService) -> bool:
    """Whether some pool has a possible pair of models online now (else pairing raises NotEnoughModels).

    Online as the health checks and the circuit breaker see it (``arena.health``), not merely configured.
    """
    return can_pair(service.playable_models(), service.health.available())


def _healthy_pair(service: ArenaService) -> list[str]:
    """Two online models that can meet (the side-by-side tab's preselection), or none."""
    online = service.health.available()
    by_kind: dict[str, list[str]] = {}
    for model in service.playable_models():
        if model.name in online:
            by_kind.setdefault(model.kind, []).append(model.name)
    return next((names[:2] for names in by_kind.values() if len(names) >= 2), [])


# Runs in the browser (the page's load event and the language selector): the language to show, then
# every bound text in it from a table built with the page; also <html lang>, the tab title, the
# toast titles and the memory of the choice. Keep its rules those of arena.i18n.normalise.
_CLIENT_LANGUAGE = """
() => {
  const P = window.arenaPage = window.arenaPage || %(data)s;
  window.arenaLanguage = window.arenaLanguage || ((code) => {
    const normalise = (tag) => {
      if (!tag || typeof tag !== 'string') return null;
      const t = tag.trim().replace(/_/g, '-').toLowerCase();
      const exact = P.languages.find((c) => c.toLowerCase() === t);
      if (exact) return exact;
      const parts = t.split('-');
      if (parts[0] === 'zh') {
        return parts.slice(1).some((p) => ['hant', 'tw', 'hk', 'mo'].includes(p)) ? 'zh-TW' : 'zh-CN';
      }
      return P.languages.find((c) => c.toLowerCase() === parts[0]) || null;
    };
    let lang = normalise(code);
    if (!lang) {
      lang = normalise(new URLSearchParams(window.location.search).get('lang'));
      try { lang = lang || normalise(window.localStorage.getItem(P.storage)); } catch (e) { /* storage off */ }
      for (const tag of (navigator.languages || [navigator.language])) { lang = lang || normalise(tag); }
      lang = lang || P.default;
    } else {
      try { window.localStorage.setItem(P.storage, lang); } catch (e) { /* storage off */ }
    }
    const root = document.documentElement;
    root.lang = lang;
    document.title = P.title[lang];
    if (!P.observer) {
      // Gradio titles every toast with its type in English; the page's language replaces it as the
      // toast appears (before it is painted: observers run ahead of rendering).
      const retitle = (el) => {
        const type = ['error', 'warning', 'info', 'success'].find((t) => el.classList.contains(t));
        const title = type && P.toast[root.lang] && P.toast[root.lang][type];
        const text = Array.from(el.childNodes).find((n) => n.nodeType === 3 && n.nodeValue.trim());
        if (title && text && text.nodeValue.trim() !== title) text.nodeValue = title + ' ';
      };
      // Plotly does not wrap a title: one longer than its plot (a phone, a long translation) is
      // broken into lines between words as Plotly draws it, and lifted to stay in the top margin.
      const wrap = (t) => {
        const svg = t.ownerSVGElement;
        if (!svg || t.dataset.arenaWrapped === t.textContent || t.querySelector('tspan')) return;
        const width = svg.getBoundingClientRect().width, x = parseFloat(t.getAttribute('x')) || 0;
        const middle = t.getAttribute('text-anchor') === 'middle';
        const room = (middle ? 2 * Math.min(x, width - x) : width - x) - 8;
        const full = t.textContent;
        if (room <= 0 || t.getComputedTextLength() <= room) return;
        const lines = [''];
        for (const word of full.split(' ')) {
          const line = lines[lines.length - 1], tried = line ? line + ' ' + word : word;
          t.textContent = tried;
          if (line && t.getComputedTextLength() > room) lines.push(word); else lines[lines.length - 1] = tried;
        }
        t.textContent = '';
        const size = parseFloat(getComputedStyle(t).fontSize) || 12;
        lines.forEach((line, i) => {
          const span = document.createElementNS('http://www.w3.org/2000/svg', 'tspan');
          span.setAttribute('x', x);
          span.setAttribute('dy', i ? (1.2 * size) + 'px' : '0');
          span.textContent = line;
          t.appendChild(span);
        });
        const y = parseFloat(t.getAttribute('y')) || 0;
        t.setAttribute('y', Math.max(size, y - (lines.length - 1) * 0.6 * size));
        t.dataset.arenaWrapped = t.textContent;
      };
      const added = (records) => records.some((r) => Array.from(r.addedNodes).some((n) => n.nodeType === 1));
      P.observer = new MutationObserver((records) => {
        if (!added(records)) return;
        document.querySelectorAll('.toast-title').forEach(retitle);
        document.querySelectorAll('.js-plotly-plot .gtitle').forEach(wrap);
      });
      P.observer.observe(document.body, {childList: true, subtree: true});
      // Phones: after a prompt is sent, show the two answers (the prompt stays pinned below them).
      const narrow = window.matchMedia('(max-width: 720px)');
      const reveal = (target) => {
        const panel = target && target.closest && target.closest('[role="tabpanel"]');
        const chats = panel && panel.querySelector('.arena-chats');
        if (narrow.matches && chats) setTimeout(() => chats.scrollIntoView({block: 'start', behavior: 'smooth'}), 60);
      };
      const within = (e, selector) => e.target.closest && e.target.closest(selector);
      document.addEventListener('click', (e) => { if (within(e, '#send, #sbs_send')) reveal(e.target); }, true);
      document.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && !e.shiftKey && within(e, '#prompt, #sbs_prompt')) reveal(e.target);
      }, true);
    }
    setTimeout(() => requestAnimationFrame(() => root.classList.add('arena-ready')), 0);
    return P.texts[lang];
  });
  return window.arenaLanguage(null);
}
"""
# The selector's switch: the function the load event defined (the table travels in the page once).
_SWITCH_LANGUAGE = "(code) => window.arenaLanguage(code)"


def _client_language(texts: Texts, language: gr.Dropdown, page_title: str | None) -> str:
    """The browser-side language function with every bound text of the page in every language."""
    blocks = texts.blocks
    table: dict[str, list[Any]] = {}
    for code in i18n.LANGUAGES:
        update = texts.updates(code)
        update[language] = {**update[language], "value": code}
        table[code] = [update[block] for block in blocks]
    data = {
        "languages": list(i18n.LANGUAGES),
        "default": texts.default,
        "storage": LANGUAGE_STORAGE_KEY,
        "title": {code: page_title or i18n.text(code, "app.title") for code in i18n.LANGUAGES},
        "toast": {
            code: {
                "error": i18n.text(code, "app.error_title"),
                "warning": i18n.text(code, "app.warning_title"),
                "info": i18n.text(code, "app.info_title"),
            }
            for code in i18n.LANGUAGES
        },
        "texts": table,
    }
    # "</" cannot end a script element the config is embedded in.
    return _CLIENT_LANGUAGE % {"data": json.dumps(data, ensure_ascii=False).replace("</", "<\\/")}


def build_ui(service: ArenaService, campaigns: CampaignService | None = None) -> gr.Blocks:
    """Build the arena page around ``service`` (the page holds no other state)."""
    return build_page(service, campaigns)[0]


def build_page(service: ArenaService, campaigns: CampaignService | None = None) -> tuple[gr.Blocks, Texts]:
    """The page and the bindings of its texts (tests check every visible text is bound)."""
    settings = service.settings
    default = settings.default_language
    texts = Texts(default)
    page_title = settings.title or i18n.text(default, "app.title")
    # While the banner shows, the page asks again as often as the health checks run (with the checks
    # off, a model comes back only by a trial battle after the breaker's cooldown).
    banner_every = max(1.0, settings.health_interval or settings.breaker_cooldown)

    def header(language: str) -> str:
        title = settings.title or i18n.text(language, "app.title")
        description = settings.description or i18n.text(language, "app.description")
        return f"# {title}\n{description}"

    def terms_text(language: str) -> str:
        return f"### {i18n.text(language, 'terms.heading')}\n\n{settings.terms or i18n.text(language, 'terms.text')}"

    with ArenaBlocks(title=page_title, session_ttl=settings.session_ttl) as demo:
        visitor = gr.State(Visitor(default))
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
        # Polls the models' health only while the banner is up (until they are back).
        banner_timer = gr.Timer(banner_every, active=False)
        with gr.Column(elem_id="terms") as terms_box:
            texts.bind(gr.Markdown(elem_id="terms_text"), value=terms_text)
            accept = texts.bind(gr.Button(variant="primary", elem_id="accept_terms"), value="terms.agree")
        with gr.Tabs(elem_id="tabs", overflow_behavior="wrap"):  # on a phone, no tab hides behind "•••"
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
        banner_parts = (banner, banner_timer)
        _wire_page(demo, service, texts, visitor, language, banner_parts, terms_box, accept, panels, settings.title)
    _guard(demo, service, visitor)
    return demo, texts


# Components through which a page uploads files (Gradio's /upload route serves only them).
_FILE_INPUTS = (
    gr.File,
    gr.UploadButton,
    gr.Image,
    gr.ImageEditor,
    gr.Audio,
    gr.Video,
    gr.Gallery,
    gr.Model3D,
    gr.MultimodalTextbox,
)


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

    # Gradio's routes the page does not use are closed (see guard.py): uploads while no component
    # takes a file, and the screen recorder's ffmpeg.
    takes_files = any(isinstance(block, _FILE_INPUTS) for block in demo.blocks.values())
    closed = (
        ("/gradio_api/process_recording",) if takes_files else ("/gradio_api/upload", "/gradio_api/process_recording")
    )
    guard: dict[str, Any] = {
        "closed": closed,
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
    language: gr.Dropdown,
    banner_parts: tuple[gr.Markdown, gr.Timer],
    terms_box: gr.Column,
    accept: gr.Button,
    panels: tuple[Panel, ...],
    page_title: str | None,
) -> None:
    default = texts.default
    banner, banner_timer = banner_parts
    pickers = [picker for panel in panels for picker in (panel.pickers or ())]
    sending = [c for panel in panels for c in (panel.prompt, panel.send)]
    client_language = _client_language(texts, language, page_title)

    def banner_update(who: Visitor) -> dict[Any, Any]:
        offline = not _can_battle(service)
        return {
            banner: gr.update(value=texts.t(who.language, "app.no_models"), visible=offline),
            banner_timer: gr.Timer(active=offline),
        }

    def on_load(code: str | None, who: Visitor, request: gr.Request) -> dict[Any, Any]:
        # The browser already shows the page in ``code`` (chosen by the same rules, see the module
        # docstring); the header is the fallback for a client that ran no script.
        who.language = i18n.normalise(code) or _pick_language(request, default)
        update: dict[Any, Any] = {visitor: who, **banner_update(who)}
        names = [m.name for m in service.playable_models()]
        chosen = _healthy_pair(service)
        for i, picker in enumerate(pickers):
            # Preselected only among models online now; otherwise none (the banner says why).
            update[picker] = gr.update(choices=names, value=chosen[i % 2] if chosen else None)
        return update

    def on_language(code: str, who: Visitor) -> Visitor:
        who.language = i18n.normalise(code) or default
        return who

    def on_accept(who: Visitor) -> dict[Any, Any]:
        who.accepted_terms = True
        update: dict[Any, Any] = {visitor: who, terms_box: gr.Column(visible=False)}
        for panel in panels:
            update.update(panel.enable_sending())
        return update

    def after_refusal(who: Visitor) -> dict[Any, Any]:
        # A visitor whose session was forgotten (ARENA_SESSION_TTL) must agree again; the notice
        # was hidden on this page, so a refused send brings it back. A send refused because the
        # models went offline puts the banner up.
        return {terms_box: gr.Column(visible=not who.accepted_terms), **banner_update(who)}

    for panel in panels:
        panel.send_event.failure(
            after_refusal,
            inputs=[visitor],
            outputs=[terms_box, banner, banner_timer],
            api_visibility="private",
            show_progress="hidden",
        )

    texts_out = texts.blocks
    # No input on load: the script chooses; from the selector, the visitor's choice (remembered).
    demo.load(None, outputs=texts_out, js=client_language, api_visibility="private").then(
        on_load, inputs=[language, visitor], outputs=[visitor, banner, banner_timer, *pickers], api_visibility="private"
    )
    language.input(None, inputs=[language], outputs=texts_out, js=_SWITCH_LANGUAGE, api_visibility="private").then(
        on_language, inputs=[language, visitor], outputs=[visitor], api_visibility="private"
    )
    banner_timer.tick(
        banner_update,
        inputs=[visitor],
        outputs=[banner, banner_timer],
        api_visibility="private",
        show_progress="hidden",
    )
    accept.click(on_accept, inputs=[visitor], outputs=[visitor, terms_box, *sending], api_name="accept_terms").then(
        None, js=FOCUS_PROMPT, api_visibility="private"
    )
