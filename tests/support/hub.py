"""A local stand-in for the Hugging Face Hub: the HTTP routes ``huggingface_hub`` uses for a dataset repo.

No installable server accepts commits (olah is a read-only mirror), so this speaks, over real HTTP
on loopback, exactly the routes ``huggingface_hub`` 2.4 calls (read from its source:
``hf_api.py``, ``_commit_api.py``, ``file_download.py``, ``utils/_http.py``)::

    POST /api/repos/create                                   create_repo (409 when it exists)
    GET  /api/datasets/{ns}/{name}[/revision/{rev}]          repo_info / dataset_info
    GET  /api/datasets/{ns}/{name}/auth-check[/write]        auth_check
    POST /api/datasets/{ns}/{name}/preupload/{rev}           upload modes ("regular": content inline)
    POST /api/datasets/{ns}/{name}/commit/{rev}              create_commit (NDJSON: header, file, deletedFile)
    GET  /api/datasets/{ns}/{name}/tree/{rev}[/{path}]       list_repo_tree (recursive or not)
    HEAD/GET /datasets/{ns}/{name}/resolve/{rev}/{path}      hf_hub_download (X-Repo-Commit, ETag)

Errors carry the Hub's ``X-Error-Code`` header (``RepoNotFound``, ``EntryNotFound``) so the client
raises the same exception types as against the real Hub. Tokens are ``write`` or ``read``; a read
token gets 403 on every write, as the Hub answers a fine-grained read-only token.

Faults (:meth:`HubStandIn.fault`): an HTTP status (401, 403, 429, 500, 503...) or ``"hang"`` (the
request gets no answer until the fault is cleared or the server stops), on the requests whose
method and path match, for the next ``times`` matching requests (None: until cleared).

What it does not do: LFS or Xet uploads (every file is "regular", sent base64 inside the commit),
pull requests, branches other than ``main``, pagination (one page holds every file).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Repo:
    """One dataset repo: its files at the head of ``main`` and its commit history."""

    repo_id: str
    private: bool = True
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    what: int | str  # an HTTP status, or "hang"
    times: int | None
    hits: int = 0


class HubStandIn:
    """The Hub stand-in on a free loopback port; ``endpoint`` is what ``HF_ENDPOINT`` should be.

    Parameters
    ----------
    tokens
        Bearer token -> ``"write"`` or ``"read"``. A request without a known token may read only
        public repos and write nothing (401).

    Attributes
    ----------
    repos
        ``repo_id`` -> :class:`Repo`.
    requests
        ``(method, path, status)`` of every request answered, oldest first.
    """

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = dict(tokens or {"hf_write": "write", "hf_read": "read"})
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self.port = 0
        repo = "/{ns}/{name}"
        routes = [
            ("/api/repos/create", self._create, ["POST"]),
            (f"/api/datasets{repo}", self._info, ["GET"]),
            (f"/api/datasets{repo}/revision/{{rev}}", self._info, ["GET"]),
            (f"/api/datasets{repo}/auth-check", self._auth_check, ["GET"]),
            (f"/api/datasets{repo}/auth-check/write", self._auth_check, ["GET"]),
            (f"/api/datasets{repo}/preupload/{{rev}}", self._preupload, ["POST"]),
            (f"/api/datasets{repo}/commit/{{rev}}", self._commit, ["POST"]),
            (f"/api/datasets{repo}/tree/{{rev}}", self._tree, ["GET"]),
            (f"/api/datasets{repo}/tree/{{rev}}/{{path:path}}", self._tree, ["GET"]),
            (f"/datasets{repo}/resolve/{{rev}}/{{path:path}}", self._resolve, ["GET", "HEAD"]),
        ]
        self._app = Starlette(routes=[Route(path, self._guarded(fn), methods=m) for path, fn, m in routes])

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubStandIn:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(self._app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"hub-stand-in-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the Hub stand-in did not start")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
            assert self._server is not None and self._socket is not None
            await self._server.serve(sockets=[self._socket])

        asyncio.run(main())

    def stop(self) -> None:
        server, loop, release = self._server, self._loop, self._release
        if server is not None:
            server.should_exit = True
            server.force_exit = True  # hung requests never finish by themselves
        if loop is not None and release is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(release.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = self._loop = self._release = None

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and inspection ------------------------------------------------------------------

    def fault(self, method: str, path: str, what: int | str, *, times: int | None = None) -> None:
        """From now on answer ``what`` to requests with ``method`` whose path matches the regex ``path``."""
        with self._lock:
            self._faults.append(Fault(method.upper(), re.compile(path), what, times))

    def clear_faults(self) -> None:
        """Remove every fault and answer the requests held by a ``"hang"``."""
        with self._lock:
            self._faults.clear()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._let_go)

    def _let_go(self) -> None:
        if self._release is not None:
            self._release.set()
        self._release = asyncio.Event()  # the next "hang" waits again

    def create(self, repo_id: str, files: dict[str, bytes] | None = None) -> Repo:
        """Create a dataset repo directly (as if made on the website), optionally with files."""
        repo = self.repos.setdefault(repo_id, Repo(repo_id))
        if files:
            self._apply(repo, "seed", [("add", p, c) for p, c in files.items()])
        return repo

    def count(self, method: str, path: str) -> int:
        """Requests answered with ``method`` and a path matching the regex ``path``."""
        pattern = re.compile(path)
        return sum(1 for m, p, _ in self.requests if m == method.upper() and pattern.search(p))

    # -- plumbing -------------------------------------------------------------------------------

    def _guarded(self, endpoint: Any) -> Any:
        async def handle(request: Request) -> Response:
            method, path = request.method, request.url.path
            fault = self._match("GET" if method == "HEAD" else method, path)
            if fault == "hang":
                assert self._release is not None
                await self._release.wait()
                response: Response = _error(503, "released from a hang")
            elif isinstance(fault, int):
                response = _error(fault, f"injected {fault}")
                if fault == 429:
                    response.headers["Retry-After"] = "1"
            else:
                response = await endpoint(request)
            self.requests.append((method, path, response.status_code))
            return response

        return handle

    def _match(self, method: str, path: str) -> int | str | None:
        with self._lock:
            for f in self._faults:
                if f.method == method and f.path.search(path) and (f.times is None or f.hits < f.times):
                    f.hits += 1
                    return f.what
        return None

    def _role(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        return self.tokens.get(token)

    def _repo(self, request: Request) -> Repo | None:
        p = request.path_params
        return self.repos.get(f"{p['ns']}/{p['name']}")

    def _readable(self, request: Request) -> Repo | Response:
        repo = self._repo(request)
        if repo is None or (repo.private and self._role(request) is None):
            return _error(404, "Repository not found", code="RepoNotFound")
        return repo

    def _writable(self, request: Request) -> Repo | Response:
        role = self._role(request)
        if role is None:
            return _error(401, "Invalid credentials in Authorization header")
        repo = self._readable(request)
        if isinstance(repo, Response):
            return repo
        if role != "write":
            return _error(403, "You don't have the rights to write to this repository (read-only token)")
        return repo

    def _apply(self, repo: Repo, summary: str, ops: list[tuple[str, str, bytes]]) -> str:
        with self._lock:
            for kind, path, content in ops:
                if kind == "add":
                    repo.files[path] = content
                elif kind == "delete":
                    repo.files.pop(path, None)
            oid = hashlib.sha1(f"{repo.sha}{summary}{uuid.uuid4()}".encode()).hexdigest()
            repo.commits.append({"oid": oid, "summary": summary, "paths": [p for _, p, _ in ops]})
            return oid

    # -- routes ---------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        role = self._role(request)
        if role is None:
            return _error(401, "Invalid credentials in Authorization header")
        if role != "write":
            return _error(403, "You don't have the rights to create a dataset under this namespace")
        body = await request.json()
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else f"user/{body['name']}"
        url = f"{self.endpoint}/datasets/{repo_id}"
        if repo_id in self.repos:  # the Hub's 409 carries the url too (create_repo(exist_ok=True) reads it)
            response = _error(409, "You already created this dataset repo")
            response.body = json.dumps({"error": "You already created this dataset repo", "url": url}).encode()
            response.headers["Content-Length"] = str(len(response.body))
            return response
        self.repos[repo_id] = Repo(repo_id, private=body.get("visibility", "private") != "public")
        return JSONResponse({"url": url, "name": repo_id})

    async def _info(self, request: Request) -> Response:
        repo = self._readable(request)
        if isinstance(repo, Response):
            return repo
        return JSONResponse(
            {
                "id": repo.repo_id,
                "sha": repo.sha,
                "private": repo.private,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
        )

    async def _auth_check(self, request: Request) -> Response:
        repo = self._writable(request) if request.url.path.endswith("/write") else self._readable(request)
        return repo if isinstance(repo, Response) else JSONResponse({})

    async def _preupload(self, request: Request) -> Response:
        repo = self._writable(request)
        if isinstance(repo, Response):
            return repo
        body = await request.json()
        return JSONResponse(
            {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]]}
        )

    async def _commit(self, request: Request) -> Response:
        repo = self._writable(request)
        if isinstance(repo, Response):
            return repo
        summary, ops = "", []
        for line in (await request.body()).splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value["summary"]
            elif item["key"] == "file":
                ops.append(("add", value["path"], base64.b64decode(value["content"])))
            elif item["key"] in ("deletedFile", "deletedFolder"):
                ops.append(("delete", value["path"], b""))
            else:
                return _error(400, f"the stand-in does not accept {item['key']} operations")
        oid = self._apply(repo, summary, ops)
        return JSONResponse({"commitUrl": f"{self.endpoint}/datasets/{repo.repo_id}/commit/{oid}", "commitOid": oid})

    async def _tree(self, request: Request) -> Response:
        repo = self._readable(request)
        if isinstance(repo, Response):
            return repo
        prefix = request.path_params.get("path", "").strip("/")
        recursive = request.query_params.get("recursive", "false").lower() == "true"
        base = f"{prefix}/" if prefix else ""
        if prefix and not any(p.startswith(base) for p in repo.files):
            return _error(404, f"{prefix} does not exist", code="EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(repo.files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if not recursive and depth > 1:
                    break
                folder = base + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": "0" * 40, "size": 0})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "size": len(content), "oid": _git_oid(content)}
        return JSONResponse(list(entries.values()))

    async def _resolve(self, request: Request) -> Response:
        repo = self._readable(request)
        if isinstance(repo, Response):
            return repo
        path = request.path_params["path"]
        if path not in repo.files:
            return _error(404, f"{path} does not exist", code="EntryNotFound")
        content = repo.files[path]
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{_git_oid(content)}"', "Content-Length": str(len(content))}
        if request.method == "HEAD":
            return Response(b"", headers=headers)
        return Response(content, headers=headers, media_type="application/octet-stream")


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _error(status: int, message: str, *, code: str | None = None) -> JSONResponse:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"error": message}, status_code=status, headers=headers)
