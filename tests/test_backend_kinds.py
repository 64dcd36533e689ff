"""Backend kinds are a table: a new kind is one class plus one entry, and nothing else names kinds."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from arena.backends import BACKEND_KINDS, Backend, Chunk, GenerationRequest, ServerInfo, backend_class
from arena.errors import ConfigError
from arena.registry import ModelSpec, parse_registry
from arena.storage import Store
from tests.support.services import close, make_service, play

ROOT = Path(__file__).resolve().parents[1]


class EchoBackend(Backend):
    """A kind the arena does not ship: answers with the newest user message, backwards, word by word."""

    kind = "echo"
    renders_own_prompt = True
    default_server = "openai"

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        if spec.model is None:
            raise ValueError("an echo model needs 'model' (its voice)")

    @classmethod
    def request_body(cls, spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
        return {"voice": spec.model, "messages": [dict(m) for m in request.messages]}

    async def stream(self, request: GenerationRequest, pace: float = 0.0) -> AsyncIterator[Chunk]:
        last = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
        words = last.split()[::-1]
        for word in words:
            await asyncio.sleep(0)
            yield Chunk(word + " ")
        yield Chunk("", "eos", len(words))

    async def probe(self) -> ServerInfo:
        return ServerInfo(model_id=self.spec.model)


@pytest.fixture
def echo_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKEND_KINDS, "echo", f"{__name__}:EchoBackend")


def test_a_new_kind_is_one_class_and_one_table_entry(echo_kind: None, tmp_path: Path) -> None:
    roster = {
        "models": [
            {"name": "left", "backend": "echo", "url": "http://127.0.0.1:1", "model": "calm"},
            {"name": "right", "backend": "echo", "url": "http://127.0.0.1:1", "model": "bright"},
        ]
    }
    registry = parse_registry(roster, source="echo.yaml", environ={})
    assert backend_class("echo") is EchoBackend
    assert registry["left"].server_kind == "openai"  # the kind's default_server
    with pytest.raises(ConfigError, match=r"echo.yaml: model #1 \('x'\): field '\(model\)': an echo model needs"):
        parse_registry({"models": [{"name": "x", "backend": "echo", "url": "http://h"}]}, source="echo.yaml")

    store = Store(f"sqlite:///{tmp_path / 'echo.sqlite3'}")
    service = make_service(list(registry), store)

    async def scenario() -> None:
        session = service.new_session("client-1")
        views = await play(service, session, "one two three")
        assert views[-1].can_vote
        assert [a.text.split() for a in views[-1].answers] == [["three", "two", "one"]] * 2
        reveal = await service.vote(session, "model_a")
        assert {reveal.model_a, reveal.model_b} == {"left", "right"}
        await close(service)

    asyncio.run(scenario())
    assert sum(p.count for p in store.pair_counts()) == 1
    body = backend_class("echo").request_body(
        registry["left"], GenerationRequest(messages=({"role": "user", "content": "hi"},))
    )
    assert body == {"voice": "calm", "messages": [{"role": "user", "content": "hi"}]}


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown backend 'grpc'; the known kinds are tgi, openai$"):
        backend_class("grpc")
    with pytest.raises(ConfigError, match=r"field 'backend': unknown backend 'echo'; the known kinds are tgi, openai"):
        parse_registry({"models": [{"name": "x", "backend": "echo", "url": "http://h", "model": "m"}]}, environ={})


@pytest.mark.parametrize("kind", sorted(BACKEND_KINDS))
def test_every_shipped_kind_declares_what_the_arena_asks(kind: str) -> None:
    cls = backend_class(kind)
    assert cls.kind == kind
    assert isinstance(cls.renders_own_prompt, bool)
    assert cls.default_server


def _compares_a_kind(node: ast.AST) -> bool:
    """``x.backend == "..."``, ``x.backend != ...``, ``x.backend in (...)`` and their mirror images."""
    if not isinstance(node, ast.Compare):
        return False
    operands = [node.left, *node.comparators]
    return any(isinstance(o, ast.Attribute) and o.attr == "backend" for o in operands)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in [*(ROOT / "arena").rglob("*.py"), ROOT / "app.py"] if "backends" not in p.parts),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_the_backends_compare_kind_names(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [n.lineno for n in ast.walk(tree) if _compares_a_kind(n)]
    assert not found, f"{path.relative_to(ROOT)}:{found} compares a backend kind; ask backend_class(kind) instead"


def test_the_backends_do_not_import_the_templates() -> None:
    # templates -> backends (GenerationRequest, backend_class) is the one direction; the wire bodies
    # (tgi_body, openai_body) live with their backends.
    for path in sorted((ROOT / "arena" / "backends").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
                assert "arena.templates" not in names, f"{path.relative_to(ROOT)} imports arena.templates"
            if isinstance(node, ast.Import):
                assert all(a.name != "arena.templates" for a in node.names), path
