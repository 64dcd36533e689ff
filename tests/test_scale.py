"""Two arena processes behind the shipped nginx configuration (docs/deploy/nginx.conf), sharing PostgreSQL."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from arena.storage import Store
from benchmarks.proxy import CONF, Nginx, render
from tests.support.app_process import AppProcess
from tests.support.browser import ARTIFACTS, DESKTOP

ENV = {
    "ARENA_CLIENT_SALT": "scale-test-salt",
    "ARENA_TRUSTED_PROXY_HOPS": "1",  # what docs/deploy.md tells operators to set behind this proxy
    "ARENA_DEMO_TOKEN_RATE": "40",
    "ARENA_DEMO_FIRST_TOKEN_DELAY": "0.05",
    "ARENA_MIN_READ_SECONDS": "0",
    "ARENA_HEALTH_INTERVAL": "0",
    "ARENA_BATTLES_PER_MINUTE": "100",
}
ROUTE = re.compile(r'"(\w+) (\S+)" (\d+) .* route=([0-9a-f]{32}) upstream=(.+?) time=')


def routes(proxy: Nginx, since: int = 0) -> dict[str, set[str]]:
    """Sticky cookie value -> the processes (host:port) that answered its requests, from nginx's log.

    ``since``: log lines to pass over. When nginx tried a process that refused, the log lists every
    address tried; the last one answered.
    """
    served: dict[str, set[str]] = defaultdict(set)
    for line in proxy.log_lines()[since:]:
        match = ROUTE.search(line)
        if match and match.group(3) != "502":
            served[match.group(4)].add(match.group(5).split(", ")[-1])
    return served


def settle(proxy: Nginx) -> None:
    """Wait until nginx has logged what it answered (it writes a line after the response), 5 s at most."""
    deadline = time.monotonic() + 5
    count = -1
    while time.monotonic() < deadline:
        now = len(proxy.log_lines())
        if now == count:
            return
        count = now
        time.sleep(0.3)


def new_route(proxy: Nginx) -> tuple[str, str]:
    """A fresh sticky cookie as a first page load gets it, and the process it leads to."""
    response = httpx.get(proxy.url + "/config", timeout=30)
    response.raise_for_status()
    route = response.cookies["arena_route"]
    deadline = time.monotonic() + 5
    while route not in (served := routes(proxy)) and time.monotonic() < deadline:
        time.sleep(0.02)  # nginx writes the log line after the response
    (upstream,) = served[route]
    return route, upstream


def visitor(url: str, route: str | None = None) -> Client:
    """A gradio_client session past the terms notice; ``route``: the sticky cookie it brings, if any."""
    kwargs = {"httpx_kwargs": {"cookies": {"arena_route": route}}} if route else {}
    client = Client(url, verbose=False, **kwargs)  # type: ignore[arg-type]
    client.predict(api_name="/accept_terms")
    return client


def battle(client: Client, prompt: str) -> None:
    job = client.submit(prompt, api_name="/send")
    updates = list(job)
    assert job.status().success and updates, "the battle streamed nothing"
    client.predict(api_name="/vote_a")
    client.predict(api_name="/new_round")


@pytest.fixture(scope="module")
def stack(
    pg_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[AppProcess], Nginx]]:
    """One stack for the module; the tests run in file order and the last one kills a process."""
    db = pg_database()
    tmp_path = tmp_path_factory.mktemp("scale")
    apps = [
        AppProcess(
            ["--demo", "--db", db],
            env={**ENV, "ARENA_JOURNAL_DIR": str(tmp_path / f"sync{i}")},
            log_path=tmp_path / f"app{i}.log",
        )
        for i in range(2)
    ]
    proxy: Nginx | None = None
    try:
        for app in apps:
            app.wait_ready()
        proxy = Nginx([f"127.0.0.1:{app.port}" for app in apps], tmp_path / "nginx")
        yield db, apps, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        for app in apps:
            app.stop()


def test_the_shipped_config_renders_with_only_the_addresses_changed(tmp_path: Path) -> None:
    shipped = CONF.read_text(encoding="utf-8")
    rendered = render(shipped, ["10.0.0.1:9001", "10.0.0.2:9002", "10.0.0.3:9003"], 5555, tmp_path / "a.log")
    assert rendered.count("server 10.0.0.") == 3 and "127.0.0.1:786" not in rendered
    assert "listen 127.0.0.1:5555;" in rendered and f"access_log {tmp_path / 'a.log'} arena_route;" in rendered
    # The compose variant is the same file with the compose service as the upstream and its own log.
    compose = (CONF.parent / "nginx-compose.conf").read_text(encoding="utf-8")
    # Besides its upstream and log, it hashes without "consistent" (see its comment).
    assert "    hash $arena_route;\n" in compose and "    hash $arena_route consistent;\n" in shipped
    strip = re.compile(r"^\s*(server \S+:\d+[^;]*;|access_log [^;]*;|hash [^;]*;|#.*)\n", re.MULTILINE)
    assert strip.sub("", compose).split("upstream", 1)[1] == strip.sub("", shipped).split("upstream", 1)[1]


def test_battles_through_nginx_stick_to_one_process_and_share_the_database(
    stack: tuple[str, list[AppProcess], Nginx],
) -> None:
    db, apps, proxy = stack
    upstreams = {f"127.0.0.1:{app.port}" for app in apps}
    with Store(db) as store:
        before = store.battle_count(), store.vote_total(mode=None, exclude_flags=())

    # Cookies as browsers get them on their first page load, until both processes have visitors.
    minted: dict[str, list[str]] = defaultdict(list)
    for _ in range(40):
        route, upstream = new_route(proxy)
        assert upstream in upstreams
        minted[upstream].append(route)
        if all(len(minted[u]) >= 2 for u in upstreams):
            break
    assert set(minted) == upstreams, f"40 new visitors all went to {set(minted)}"

    errors: list[BaseException] = []

    def play(route: str | None, n: int) -> None:
        try:
            client = visitor(proxy.url, route)
            for i in range(n):
                battle(client, f"Scale question {i}: what is 3+{i}?")
            client.close()
        except BaseException as e:
            errors.append(e)

    # Two visitors per process, plus one gradio_client that brings no cookie: it must keep the one
    # its first response sets (gradio_client does so for exactly this), or its queue events break.
    players = [route for u in sorted(upstreams) for route in minted[u][:2]] + [None]
    threads = [threading.Thread(target=play, args=(route, 2), daemon=True) for route in players]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "battles through the proxy still running after 90 s"
    assert not errors, errors
    settle(proxy)
    with Store(db) as store:
        assert store.battle_count() == before[0] + 10
        assert store.vote_total(mode=None, exclude_flags=()) == before[1] + 10

    served = routes(proxy)
    for route in players[:-1]:
        assert served[route] == {next(u for u in upstreams if route in minted[u])}, served[route]
    (own,) = [r for r in served if not any(r in m for m in minted.values())]  # the cookie-less client's
    assert len(served[own]) == 1, f"a gradio_client session was spread over {served[own]}"


def test_results_stream_through_the_proxy_and_stay_bound_to_their_visitor(
    stack: tuple[str, list[AppProcess], Nginx],
) -> None:
    _db, _apps, proxy = stack
    client = visitor(proxy.url)
    job = client.submit("Tell me a long story about a lighthouse.", api_name="/send")
    seen: list[float] = []
    started = time.monotonic()
    for _update in job:
        seen.append(time.monotonic() - started)
    # Unbuffered SSE: updates reach the client while the answer is produced, not all at the end.
    assert len(seen) >= 5, seen
    assert seen[-1] - seen[0] > 0.5, f"every update arrived within {seen[-1] - seen[0]:.2f} s: buffered"

    # The session is bound to the visitor nginx saw (127.0.0.1, the address it appends to
    # X-Forwarded-For). Another address with the same sticky cookie reaches the same process and is
    # refused, even when it forges the first visitor's address in X-Forwarded-For.
    cookies = {"arena_route": client.cookies["arena_route"]}
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), cookies=cookies, timeout=30)
    for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
        refused = other.get(
            proxy.url + "/gradio_api/queue/data", params={"session_hash": client.session_hash}, headers=headers
        )
        assert refused.status_code == 403, (refused.status_code, refused.text[:200])
        assert "127.0.0.1" not in refused.text and "Traceback" not in refused.text
    other.close()
    client.predict(api_name="/vote_tie")
    client.close()


def test_browsers_through_the_proxy_each_stay_on_one_process(
    stack: tuple[str, list[AppProcess], Nginx],
    browser,  # type: ignore[no-untyped-def]
) -> None:
    """Real pages (Gradio's own JavaScript client, cookies as a browser keeps them), one per process.

    The first visitor gets its cookie from nginx; the second returns with a cookie (from an earlier
    visit) that leads to the other process.
    """
    db, apps, proxy = stack
    upstreams = {f"127.0.0.1:{app.port}" for app in apps}
    with Store(db) as store:
        votes = store.vote_total(mode=None, exclude_flags=())
    seen: dict[str, str] = {}
    for n in range(2):
        context = browser.new_context(viewport=DESKTOP, locale="en-US")
        if seen:
            for _ in range(40):
                route, upstream = new_route(proxy)
                if upstream not in seen.values():
                    break
            host = proxy.url.removeprefix("http://").split(":")[0]
            context.add_cookies([{"name": "arena_route", "value": route, "domain": host, "path": "/"}])
        page = context.new_page()
        page.goto(proxy.url)
        page.locator("#accept_terms").click(timeout=30_000)
        page.wait_for_function("() => !document.querySelector('#prompt textarea').disabled", timeout=15_000)
        page.locator("#prompt textarea").fill(f"Browser visitor {n}: what is a lighthouse?")
        page.locator("#prompt textarea").press("Enter")
        page.wait_for_function("() => !document.querySelector('#vote_a').disabled", timeout=30_000)
        page.locator("#vote_a").click()
        deadline = time.monotonic() + 15
        while True:
            with Store(db) as store:
                if store.vote_total(mode=None, exclude_flags=()) == votes + n + 1:
                    break
            assert time.monotonic() < deadline, "the vote cast in the page was not stored"
            time.sleep(0.2)
        page.screenshot(path=str(ARTIFACTS / f"scale-through-nginx-{n}.png"), full_page=True)
        (cookie,) = [c["value"] for c in context.cookies() if c["name"] == "arena_route"]
        context.close()
        settle(proxy)
        served = routes(proxy)[cookie]
        # The page, its assets, the queue, the heartbeat: every request of this visitor on one process.
        assert len(served) == 1, f"browser visitor {n} was served by {served}"
        seen[cookie] = served.pop()
    assert set(seen.values()) == upstreams, f"the two browser visitors were served by {seen}"


def test_killing_one_process_leaves_the_other_serving_new_sessions(stack: tuple[str, list[AppProcess], Nginx]) -> None:
    db, apps, proxy = stack
    victim, survivor = apps
    with Store(db) as store:
        votes = store.vote_total(mode=None, exclude_flags=())
    # A cookie that leads to the process about to die (a visitor who was on it).
    for _ in range(40):
        route, upstream = new_route(proxy)
        if upstream == f"127.0.0.1:{victim.port}":
            break
    else:
        pytest.fail("40 new visitors never reached the first process")
    victim.stop(signal.SIGKILL)
    since = len(proxy.log_lines())

    battle(visitor(proxy.url, route), "Are you still there?")  # its visitor, after a reload
    for i in range(3):  # and new visitors
        battle(visitor(proxy.url), f"New visitor {i}, one process left")
    with Store(db) as store:
        assert store.vote_total(mode=None, exclude_flags=()) == votes + 4
    settle(proxy)
    assert routes(proxy, since)[route] == {f"127.0.0.1:{survivor.port}"}
    assert survivor.proc.poll() is None
