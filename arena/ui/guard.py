"""The web edge's own limits: request body size, session binding, and the page's content policy.

:class:`RequestGuard` is an ASGI middleware in front of Gradio's routes. It

* refuses a request body larger than ``max_body`` bytes with HTTP 413 *before reading it* (by its
  ``Content-Length``) or as soon as a chunked body passes the limit, so no route ever parses,
  copies or keeps more than ``max_body`` bytes of one request (Gradio itself reads and parses
  any size on the event loop: a 100 MB prompt stalled every visitor for ~10 s);
* refuses every route that names a page session from a visitor other than the one the session
  belongs to (see :class:`SessionBinding`): ``GET /gradio_api/queue/data?session_hash=...`` (the
  stream of a session's results), ``GET /gradio_api/heartbeat/{session_hash}`` (whose disconnect
  closes the session's running events and marks its state for deletion), ``POST
  /gradio_api/cancel`` (which cancels the session's running event of a given ``fn_index``, no
  event id needed) and ``/gradio_api/stream/{session_hash}/...``; events themselves are checked
  by :mod:`arena.ui.inputs`;
* refuses Gradio routes the page does not use (``closed``): file uploads (``POST
  /gradio_api/upload``) when the page has no input that takes a file, since Gradio stores every
  upload in its cache for as long as ``delete_cache`` keeps it, whether any component asked for it
  or not (500 uploads of 60 KB: 500 files, 29 MiB, in 4.4 s from one visitor); and
  ``/gradio_api/process_recording`` (the settings panel's screen recorder), which runs ffmpeg on
  the posted video wherever ffmpeg is installed (as on Hugging Face Spaces);
* adds a ``Content-Security-Policy`` to HTML pages: images only from the arena itself and no form
  submissions, so text in a chat can never make the browser fetch a third party's image (a
  tracking beacon) or post a form.

No Gradio here: the middleware speaks plain ASGI.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

__all__ = ["CONTENT_SECURITY_POLICY", "RequestGuard", "SessionBinding"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Images and forms only: scripts, styles and fonts stay as Gradio serves them.
CONTENT_SECURITY_POLICY = "img-src 'self' data: blob:; form-action 'none'"

# Routes that name a session in their path (Gradio's heartbeat and media streams).
_SESSION_IN_PATH = re.compile(r"/gradio_api/(?:heartbeat|stream)/([^/]+)")

# Message keys (arena/i18n); ``message(key, headers)`` renders them in the visitor's language.
TOO_LARGE = "msg.too_large"
OTHER_VISITOR = "msg.other_connection"
BAD_REQUEST = "msg.bad_request"


class SessionBinding:
    """Which visitor (rate-limit key) each page session belongs to, first come first bound.

    A session hash is random and lives in one browser tab; binding it to the address that first
    used it means a hash copied elsewhere (a log, a shared link, a proxy) is no bearer credential:
    a request from another visitor key is refused. Bounded: the least recently bound of more than
    ``capacity`` sessions is forgotten (then rebound by its next request).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, session_hash: str, visitor: str) -> bool:
        """True when ``visitor`` may use ``session_hash`` (binding it if new)."""
        with self._lock:
            owner = self._owners.get(session_hash)
            if owner is None:
                self._owners[session_hash] = visitor
                if len(self._owners) > self.capacity:
                    self._owners.popitem(last=False)
                return True
            self._owners.move_to_end(session_hash)
            return owner == visitor

    def owner(self, session_hash: str) -> str | None:
        with self._lock:
            return self._owners.get(session_hash)

    def __len__(self) -> int:
        return len(self._owners)


class _Headers(Mapping[str, str]):
    """Read-only, case-insensitive view of ASGI headers (repeated headers kept, for ``multi_items``)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._items = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __len__(self) -> int:
        return len(dict.fromkeys(k for k, _ in self._items))

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)


class RequestGuard:
    """ASGI middleware: body size cap, session binding of the routes that name a session, content policy.

    ``visitor_key(peer, headers)`` is the arena's one rule for who a visitor is
    (``ArenaService.visitor_key``); ``binding`` is shared with the event handlers' own check.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        visitor_key: Callable[[str | None, Mapping[str, str]], str] | None = None,
        binding: SessionBinding | None = None,
        known_event: Callable[[object], bool] | None = None,
        message: Callable[[str, Mapping[str, str]], str] = lambda key, _headers: key,
        stream_path: str = "/gradio_api/queue/data",
        join_path: str = "/gradio_api/queue/join",
        cancel_path: str = "/gradio_api/cancel",
        closed: tuple[str, ...] = ("/gradio_api/upload", "/gradio_api/process_recording"),
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.visitor_key = visitor_key
        self.binding = binding
        self.known_event = known_event
        self.message = message
        self.stream_path = stream_path
        self.join_path = join_path
        self.cancel_path = cancel_path
        self.closed = closed  # paths refused whatever the method

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _Headers(scope.get("headers") or [])
        declared = headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_body):
            await _plain(send, 413, self.message(TOO_LARGE, headers))
            return
        path = str(scope.get("path", ""))
        if not self._may_use(scope, headers, self._session_in_url(scope)):
            await _plain(send, 403, self.message(OTHER_VISITOR, headers))
            return
        if path.rstrip("/").endswith(self.closed):
            await _plain(send, 403, self.message(BAD_REQUEST, headers))
            return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            body = await self._read_body(receive)
            if body is None:
                await _plain(send, 413, self.message(TOO_LARGE, headers))
                return
            if path.endswith(self.join_path) and not self._joinable(body):
                await _plain(send, 400, self.message(BAD_REQUEST, headers))
                return
            if path.endswith(self.cancel_path) and not self._may_use(scope, headers, _session_in_body(body)):
                await _plain(send, 403, self.message(OTHER_VISITOR, headers))
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, _with_policy(send))

    def _session_in_url(self, scope: Scope) -> str:
        """The session a GET route names: the result stream's query, the heartbeat's or a stream's path."""
        path = str(scope.get("path", ""))
        if path.endswith(self.stream_path):
            query = parse_qs(bytes(scope.get("query_string") or b"").decode("latin-1"))
            return (query.get("session_hash") or [""])[0]
        found = _SESSION_IN_PATH.search(path)
        return found.group(1) if found else ""

    def _may_use(self, scope: Scope, headers: _Headers, session: str) -> bool:
        """False when ``session`` belongs to another visitor (binding it to this one if new)."""
        if not session or self.binding is None or self.visitor_key is None:
            return True
        client = scope.get("client")
        return self.binding.claim(session, self.visitor_key(client[0] if client else None, headers))

    def _joinable(self, body: bytes) -> bool:
        """False for a queue request naming an event the page does not have (Gradio answered 500).

        Other malformed bodies are left to Gradio's own validation (HTTP 422 with the field).
        """
        if self.known_event is None:
            return True
        try:
            request = json.loads(body)
        except ValueError:
            return True
        if not isinstance(request, dict) or request.get("fn_index") is None:
            return True
        return self.known_event(request["fn_index"])

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes ``max_body`` (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body and its own disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _session_in_body(body: bytes) -> str:
    try:
        request = json.loads(body)
    except ValueError:
        return ""
    session = request.get("session_hash") if isinstance(request, dict) else None
    return session if isinstance(session, str) else ""


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later calls wait for the client's disconnect, as before

    return again


def _with_policy(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = list(message.get("headers") or [])
            is_html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in raw)
            if is_html and not any(k.lower() == b"content-security-policy" for k, _ in raw):
                raw.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message = {**message, "headers": raw}
        await send(message)

    return sending


async def _plain(send: Send, status: int, text: str) -> None:
    """A small JSON answer (``{"error": text}``), as Gradio's own routes answer errors."""
    body = json.dumps({"error": text}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
