"""A hostile visitor against the real app (python app.py --demo): bodies, raw calls, headers, a browser.

Everything speaks real HTTP to the app on a free port: raw ``/gradio_api/queue/join`` calls with
the event's ``fn_index`` (private events included), forged ``X-Forwarded-For`` headers from
127.0.0.1 and from 127.0.0.2 (a second loopback address, a different peer), and headless
Chromium with a local HTTP server standing in for a third party.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from arena.ui.markup import inert
from tests.support.app_process import AppProcess

FAST_DEMO = {
    "ARENA_DEMO_TOKEN_RATE": "400",
    "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.01",
    "ARENA_MIN_READ_SECONDS": "0",
}


def start(tmp: Path, env: dict[str, str] | None = None) -> AppProcess:
    app = AppProcess(
        ["--demo", "--db", f"sqlite:///{tmp / 'arena.sqlite3'}"],
        env={
            **FAST_DEMO,
            "TMPDIR": str(tmp / "tmp"),
            "GRADIO_TEMP_DIR": str(tmp / "gradio"),
            "ARENA_JOURNAL_DIR": str(tmp / "journal"),
            **(env or {}),
        },
        log_path=tmp / "app.log",
    )
    (tmp / "tmp").mkdir(exist_ok=True)
    return app.wait_ready()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    tmp = tmp_path_factory.mktemp("hostile")
    app = start(tmp, {"ARENA_BATTLES_PER_MINUTE": "0", "ARENA_VOTES_PER_HOUR": "0"})
    app.tmp = tmp  # type: ignore[attr-defined]
    try:
        yield app
    finally:
        app.stop()


_CONFIGS: dict[str, dict[str, Any]] = {}
_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


class Queue:
    """Raw Gradio queue calls as one visitor (one session), from ``local_address``."""

    def __init__(self, url: str, *, local_address: str | None = None, headers: dict[str, str] | None = None):
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        self.url = url
        self.client = httpx.Client(base_url=url + "/gradio_api", transport=transport, timeout=30)
        _CLIENTS.append(self.client)
        self.headers = headers or {}
        self.session = uuid.uuid4().hex[:11]
        self.fns = {d.get("api_name"): i for i, d in enumerate(self.config()["dependencies"])}

    def config(self) -> dict[str, Any]:
        if self.url not in _CONFIGS:
            _CONFIGS[self.url] = dict(httpx.get(self.url + "/config").json())
        return _CONFIGS[self.url]

    def join(self, fn: int | str, data: list[Any], *, first_only: bool = False) -> list[dict[str, Any]]:
        """Every message of one event; ``first_only`` stops at the first update or the end."""
        index = self.fns[fn] if isinstance(fn, str) else fn
        body = {"data": data, "fn_index": index, "session_hash": self.session, "event_data": None, "trigger_id": None}
        headers = {"content-type": "application/json", **self.headers}
        r = self.client.post("/queue/join", content=json.dumps(body).encode(), headers=headers)
        if r.status_code != 200:
            return [{"msg": "http", "status": r.status_code, "body": r.text}]
        event = r.json()["event_id"]
        messages = []
        with self.client.stream("GET", f"/queue/data?session_hash={self.session}", headers=self.headers) as s:
            if s.status_code != 200:
                return [{"msg": "http", "status": s.status_code, "body": s.read().decode()}]
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event):
                    continue  # another event of this session
                messages.append(message)
                if message.get("msg") in ("process_completed", "close_stream"):
                    break
                if first_only and message.get("msg") == "process_generating":
                    break
        return messages

    def result(self, fn: int | str, data: list[Any], *, first_only: bool = False) -> tuple[bool, str | None]:
        """(success, error text) of one event: the first streamed update counts as success."""
        for message in self.join(fn, data, first_only=first_only):
            if message.get("msg") == "http":
                return False, f"HTTP {message['status']}: {message['body']}"
            if message.get("msg") == "process_generating":
                return True, None
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                return bool(message.get("success")), output.get("error")
        raise AssertionError("the event never completed")


def test_a_huge_body_is_refused_before_it_is_read(app: AppProcess) -> None:
    huge = b'{"data": ["' + b"x" * 30_000_000 + b'"], "fn_index": 1, "session_hash": "abc"}'
    started = time.monotonic()
    r = httpx.post(app.url + "/gradio_api/queue/join", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": "This request is too large. Please shorten your message and try again."}
    assert time.monotonic() - started < 10  # generous: the point is it is never parsed

    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts as it reads
        for _ in range(200):
            yield b"y" * 100_000

    r = httpx.post(app.url + "/gradio_api/queue/join", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # A declared 100 MB body (in Polish, for a Polish browser): answered from the headers alone.
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as raw:
        raw.sendall(
            b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Accept-Language: pl-PL,pl;q=0.9\r\nContent-Length: 100000000\r\n\r\n{"
        )
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:
            chunk = raw.recv(65536)
            assert chunk, answer
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413") and "za duże" in json.loads(body)["error"]
    assert httpx.get(app.url + "/gradio_api/info").status_code == 200  # the app is fine


def test_the_page_takes_no_file_uploads(app: AppProcess) -> None:
    """Gradio stores any upload for an hour whether a component asked for it or not; the page has no file input."""
    tmp: Path = app.tmp  # type: ignore[attr-defined]
    before = sorted(p for p in (tmp / "gradio").rglob("*") if p.is_file())
    for _ in range(5):
        r = httpx.post(app.url + "/gradio_api/upload", files={"files": ("beacon.bin", b"\0" * 60_000)})
        assert r.status_code == 403 and "does not match the page" in r.json()["error"], r.text
    assert sorted(p for p in (tmp / "gradio").rglob("*") if p.is_file()) == before
    # Nor the screen recorder (ffmpeg on the posted video where installed), nor the run history's Hub bucket.
    r = httpx.post(app.url + "/gradio_api/process_recording", files={"video": ("r.mp4", b"\0" * 1000)})
    assert r.status_code == 403, r.text
    r = httpx.post(
        app.url + "/gradio_api/run-history/connect", json={"bucket_id": "x/y"}, headers={"authorization": "Bearer t"}
    )
    assert r.status_code == 404, r.text
    assert httpx.get(app.url + "/gradio_api/runs").status_code == 404


def test_the_longest_prompt_fits_the_body_limit(app: AppProcess) -> None:
    q = Queue(app.url)
    assert q.result("accept_terms", [None])[0]
    # 4,000 characters outside the BMP, each written as two \\u escapes: the largest legitimate body.
    ok, error = q.result("send", ["😀" * 4000, None, None], first_only=True)
    # It reaches the arena's own checks (the demo models' context is smaller than 4,000 emoji).
    assert ok or error == "Your message is too long for these models. Please shorten it and send it again.", error
    q2 = Queue(app.url)
    q2.result("accept_terms", [None])
    ok, error = q2.result("send", ["😀" * 4001, None, None])
    assert not ok and error == "Your message is 4001 characters long; the limit is 4000. Please shorten it."


def test_textboxes_carry_their_limits_to_the_browser(app: AppProcess) -> None:
    config = Queue(app.url).config()
    limits = {c["props"].get("elem_id"): c["props"].get("max_length") for c in config["components"]}
    assert limits["prompt"] == limits["sbs_prompt"] == 4000
    assert limits["reason"] == limits["sbs_reason"] == 1000


GARBAGE: list[Any] = [
    "x" * 5000,
    12345,
    {"a": [1, 2, 3]},
    ["x"] * 300,
    "lang:" + "x" * 600,
    "broken \ud800 text",
    None,
]


def test_every_event_refuses_malformed_arguments_plainly(app: AppProcess) -> None:
    """Each event the page config lists (private ones too), sent too few arguments and each garbage value."""
    q = Queue(app.url)
    config = q.config()
    events = [i for i, d in enumerate(config["dependencies"]) if d.get("backend_fn")]
    assert len(events) >= 30  # the whole page: battle, side-by-side, leaderboard, status, language
    log_before = app.log().count("Traceback")
    for index in events:
        n = len(config["dependencies"][index]["inputs"])
        if n == 0:
            continue
        ok, error = Queue(app.url).result(index, [])
        assert not ok and error == "This request does not match the page. Please reload the page and try again.", (
            index,
            error,
        )
        for value in GARBAGE:
            visitor = Queue(app.url)
            visitor.result("accept_terms", [None])
            ok, error = visitor.result(index, [value] * n, first_only=True)
            assert ok or (error and error.strip()), (index, value, error)  # never "error": null
            assert error is None or "Traceback" not in error
    r = q.client.post("/queue/join", json={"data": [], "fn_index": 999, "session_hash": q.session, "event_data": None})
    assert r.status_code == 400 and "does not match the page" in r.json()["error"]
    assert app.log().count("Traceback") == log_before, app.log()[-3000:]


def test_details_and_downloads_leave_one_file_per_slice(app: AppProcess) -> None:
    tmp: Path = app.tmp  # type: ignore[attr-defined]
    q = Queue(app.url)
    q.result("accept_terms", [None])
    assert q.result("send", ["Tell me about rivers.", None, None])[0]
    time.sleep(0.3)
    assert q.result("vote_a", ["", None, None])[0]
    for name in ("prepare_battles", "details"):  # the files of this state of the votes
        assert q.result(name, ["overall", None])[0]
    cached_before = sorted((tmp / "gradio").rglob("*.csv"))
    started = time.monotonic()
    calls = 0
    while time.monotonic() - started < 3.5 or calls < 30:  # spans several seconds (names had a timestamp)
        for name in ("prepare_battles", "details"):
            slice_name = "overall" if calls % 2 else f"lang:q{calls}"
            assert q.result(name, [slice_name, None])[0]
        calls += 1
        time.sleep(0.05)
    ok, error = q.result("details", ["lang:" + "x" * 600, None])
    assert not ok and "does not match the page" in (error or "")
    downloads = [p for p in (tmp / "tmp").glob("arena-downloads-*/*") if p.is_file()]
    names = sorted(p.name for p in downloads)
    assert len(downloads) == 2, names  # one ratings file and one battles file for "overall"
    assert sorted((tmp / "gradio").rglob("*.csv")) == cached_before  # Gradio's copies: one per file made


def test_campaign_results_leave_one_file_per_slice(app: AppProcess) -> None:
    """Each new vote makes a new results file; the older one goes (one per vote count was kept forever)."""
    tmp: Path = app.tmp  # type: ignore[attr-defined]
    made = set()
    for _ in range(3):
        q = Queue(app.url)
        assert q.result("accept_terms", [None])[0]
        assert q.result("campaign_next", ["demo-bilingual", "", None])[0]
        assert q.result("campaign_vote_a", ["", None, None])[0]
        assert q.result("campaign_results", ["demo-bilingual", "overall", None])[0]
        made |= {p.name for p in (tmp / "tmp").glob("arena-campaign-*/*.csv")}
    assert len(made) == 3, made  # three states of the votes, three files made one after the other
    kept = [p.name for p in (tmp / "tmp").glob("arena-campaign-*/*") if p.is_file()]
    assert len(kept) == 1, kept


# -- who a visitor is -----------------------------------------------------------------------------


def _second_loopback() -> str:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError as e:
        pytest.fail(f"cannot bind 127.0.0.2 (a second loopback address is needed for this test): {e}")
    return "127.0.0.2"


def _battle(url: str, *, local: str | None, xff: str | None) -> tuple[bool, str | None]:
    q = Queue(url, local_address=local, headers={"x-forwarded-for": xff} if xff else None)
    q.result("accept_terms", [None])
    return q.result("send", ["Hello there, how are you?", None, None], first_only=True)


@pytest.mark.parametrize("hops", [0, 1])
def test_forged_forwarded_for_never_makes_a_new_visitor(tmp_path: Path, hops: int) -> None:
    other = _second_loopback()
    app = start(tmp_path, {"ARENA_BATTLES_PER_MINUTE": "2", "ARENA_TRUSTED_PROXY_HOPS": str(hops)})
    try:
        for peer in ("127.0.0.1", other):
            # hops=0: the header is ignored, the peer is the visitor. hops=1: our proxy appends the
            # address it saw as the last entry; the client-written entries to its left never count.
            real = "198.51.100.7" if hops else None
            results = []
            for _ in range(3):
                forged = f"203.0.113.{uuid.uuid4().int % 250}"
                xff = f"{forged}, {real}" if real else forged
                results.append(_battle(app.url, local=peer, xff=xff))
            assert [ok for ok, _ in results] == [True, True, False], (peer, results)
            assert "limit of 2 new battles per minute" in (results[2][1] or "")
            if hops:
                break  # the visitor is 198.51.100.7 whatever the peer: the limit is already used up
        if hops:
            # From the other peer too, forged entries left of the same proxy entry are that visitor.
            assert not _battle(app.url, local=other, xff="203.0.113.77, 198.51.100.7")[0]
            # A different address written by our proxy is a different visitor, from any peer.
            assert _battle(app.url, local=other, xff="203.0.113.1, 198.51.100.8")[0]
        else:
            # Without trusted proxies, a header from the loopback is not believed either.
            assert not _battle(app.url, local="127.0.0.1", xff="198.51.100.99")[0]
    finally:
        app.stop()


def test_addresses_of_one_ipv6_network_are_one_visitor(tmp_path: Path) -> None:
    """Behind our proxy (one trusted hop): a /64 is one visitor, whichever of its 2^64 addresses it uses."""
    app = start(tmp_path, {"ARENA_BATTLES_PER_MINUTE": "2", "ARENA_TRUSTED_PROXY_HOPS": "1"})
    try:
        addresses = ("2001:db8:7:7::1", "2001:db8:7:7::beef", "2001:db8:7:7:ffff::1")
        results = [_battle(app.url, local=None, xff=address) for address in addresses]
        assert [ok for ok, _ in results] == [True, True, False], results
        assert "limit of 2 new battles per minute" in (results[2][1] or "")
        assert not _battle(app.url, local=None, xff="2001:db8:7:7:1234:5678:9abc:def0")[0]
        assert _battle(app.url, local=None, xff="2001:db8:7:8::1")[0]  # the next /64: another subscriber
        # An IPv4 address written as IPv6 is that IPv4 visitor.
        assert _battle(app.url, local=None, xff="198.51.100.20")[0]
        assert _battle(app.url, local=None, xff="::ffff:198.51.100.20")[0]
        assert not _battle(app.url, local=None, xff="::ffff:198.51.100.20")[0]
    finally:
        app.stop()


def test_a_session_hash_is_no_credential_from_another_address(app: AppProcess) -> None:
    other = _second_loopback()
    owner = Queue(app.url, local_address="127.0.0.1")
    assert owner.result("accept_terms", [None])[0]
    thief = Queue(app.url, local_address=other)
    thief.session = owner.session
    # The thief's event is refused before it runs, and the session's stream is closed to the thief.
    ok, error = thief.result("send", ["Hello from elsewhere", None, None])
    assert not ok and error is not None and error.startswith("HTTP 403")
    assert "belongs to another connection" in error
    ok, error = owner.result("send", ["Hello from home", None, None], first_only=True)
    assert ok, error
    # Gradio's other routes that name a session: the thief can neither cancel the owner's running
    # event (no event id needed) nor hold and drop its heartbeat (which closes the session's events).
    owner.result("new_round", [None, None])
    index = owner.fns["send"]
    body = {"data": ["Tell me about rivers.", None, None], "fn_index": index, "session_hash": owner.session}
    event = owner.client.post("/queue/join", json={**body, "event_data": None, "trigger_id": None}).json()["event_id"]
    cancel = thief.client.post("/cancel", json={"session_hash": owner.session, "fn_index": index, "event_id": event})
    assert cancel.status_code == 403 and "belongs to another connection" in cancel.json()["error"], cancel.text
    with thief.client.stream("GET", f"/heartbeat/{owner.session}") as heartbeat:
        assert heartbeat.status_code == 403
    with owner.client.stream("GET", f"/queue/data?session_hash={owner.session}") as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed" and message.get("event_id") == event:
                break
    assert message["success"] and message["output"].get("data"), message  # answered, not cut short
    with owner.client.stream("GET", f"/heartbeat/{owner.session}") as heartbeat:
        assert heartbeat.status_code == 200  # the owner's own heartbeat is untouched


# -- chat text in a real browser --------------------------------------------------------------------


class _Counter(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counter.hits.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.browser
def test_chat_text_loads_no_third_party_image_and_shows_no_form(app: AppProcess) -> None:
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's package with `apt-get install chromium`.")
    from playwright.sync_api import sync_playwright

    third = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=third.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{third.server_address[1]}"
    prompt = (
        f'Look: <img src="{base}/html.png"> and ![md]({base}/md.png) '
        f'<form action="{base}/form" method="post"><input name="q" value="x"><button id="go">Go</button></form> '
        f'<video poster="{base}/poster.png"></video> [ref image]: ![r][b]\n\n[b]: {base}/ref.png'
    )
    assert httpx.get(app.url).headers.get("content-security-policy", "").startswith("img-src 'self'")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(app.url)
                page.locator("#accept_terms").first.click(timeout=30_000)
                box = page.locator("#prompt textarea").first
                page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=30_000)
                box.fill(prompt)
                box.press("Enter")
                page.locator("#chat_a .message.bot, #chat_a [data-testid='bot']").first.wait_for(timeout=20_000)
                page.wait_for_function(
                    "() => !document.querySelector('#vote_a').disabled", timeout=30_000
                )  # both answers (which echo the prompt) finished
                page.wait_for_timeout(1000)
                forms = page.evaluate(
                    "() => document.querySelectorAll('#chat_a form, #chat_b form, #chat_a input, #chat_b input, "
                    '#chat_a img[src^="http"], #chat_b img[src^="http"], #chat_a video, #chat_b video\').length'
                )
                text = page.inner_text("#chat_a")
            finally:
                browser.close()
    finally:
        third.shutdown()
        third.server_close()
    assert forms == 0
    assert _Counter.hits == [], _Counter.hits
    assert "<form" in text and "![md]" in text  # shown as the text that was written


# -- chat text, without a browser -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<img src=https://t.example/b.png>", "&lt;img src=https://t.example/b.png>"),
        ("<form action=x><input></form>", "&lt;form action=x>&lt;input>&lt;/form>"),
        ("![beacon](https://t.example/b.png)", "!&#91;beacon](https://t.example/b.png)"),
        ("plain text, 2 > 1", "plain text, 2 > 1"),
        ("`vec![1] <T>` stays", "`vec![1] <T>` stays"),
        ("```rust\nlet v: Vec<u8> = vec![1];\n```\n<b>", "```rust\nlet v: Vec<u8> = vec![1];\n```\n&lt;b>"),
        ("``a ` <b>`` <i>", "``a ` <b>`` &lt;i>"),
        ("unclosed `code <b>", "unclosed `code &lt;b>"),
    ],
)
def test_chat_text_is_made_inert_outside_code(text: str, shown: str) -> None:
    assert inert(text) == shown
