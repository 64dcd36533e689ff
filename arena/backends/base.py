"""What every backend offers: stream a request as chunks, report health and server info."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from arena.domain import FinishReason
from arena.registry import GenerationParams, ModelSpec, Server


@dataclass(frozen=True)
class Timeouts:
    """Named network limits, in seconds (see the settings table)."""

    connect: float = 5.0
    first_token: float = 60.0  # from sending the request to the first token
    read: float = 30.0  # longest silence between chunks once streaming
    total: float = 300.0  # deadline for the whole answer


@dataclass(frozen=True)
class GenerationRequest:
    """Exactly what goes to the server: a rendered prompt (tgi) or role-mapped messages (openai)."""

    params: GenerationParams = field(default_factory=GenerationParams)
    prompt: str | None = None
    messages: tuple[Mapping[str, str], ...] = ()
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of streamed output. The last chunk carries ``finish_reason``."""

    text: str
    finish_reason: FinishReason | None = None
    generated_tokens: int | None = None


@dataclass(frozen=True)
class ServerInfo:
    """What a server says about itself (TGI ``/info``; an OpenAI server's ``/v1/models``).

    ``model_id`` is the roster's id when the server serves it, else the first one it reported;
    ``model_ids`` are all it reported (for the log when the roster's id is not among them).
    ``max_total_tokens`` is the context (prompt + answer) where the server tells it: TGI's
    ``max_total_tokens``, vLLM's ``max_model_len``, llama-server's ``meta.n_ctx``.
    """

    model_id: str | None = None
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    max_stop_sequences: int | None = None
    model_ids: tuple[str, ...] = ()


class Backend(ABC):
    """The only way the arena talks to a model server.

    ``stream`` raises only :class:`arena.errors.BackendError` subclasses, enforces the
    first-token, read and total timeouts itself, and closes the upstream request when the
    consuming task is cancelled or the generator is closed. With ``pace`` > 0, once the answer
    flows it reads from the network at most every ``pace`` seconds, taking all that arrived
    meanwhile (the first token is never held back; later text waits up to two paces).

    A subclass is one backend *kind* (models.yaml's ``backend:``): it declares the class attributes
    below and has one entry in :data:`arena.backends.BACKEND_KINDS`. The rest of the arena asks the
    class (:func:`arena.backends.backend_class`), never compares kind names.
    """

    kind: ClassVar[str]
    """The name models.yaml gives this backend (``backend: <kind>``), as in ``BACKEND_KINDS``."""
    renders_own_prompt: ClassVar[bool] = True
    """True: the server applies the model's chat template to the role-mapped messages the arena sends.
    False: the arena renders the prompt itself (a chat model then needs ``template:``, ``chat_template:``
    or ``tokenizer:``) and sends the text without its leading BOS (the server's tokenizer adds it)."""
    default_server: ClassVar[Server]
    """The server flavour (``server:``) assumed when models.yaml names none."""

    @classmethod  # noqa: B027 - optional hook: most kinds have no rules of their own
    def check_spec(cls, spec: ModelSpec) -> None:
        """The kind's own rules for a models.yaml entry (called by its validation).

        Raises
        ------
        ValueError
            Saying what to write instead (the registry adds the file, model and field).
        """

    @classmethod
    def completes_raw_text(cls, spec: ModelSpec) -> bool:
        """Whether ``spec``'s server can continue raw text (and so play continuation battles)."""
        return True

    @classmethod
    def unsent_params(cls, spec: ModelSpec) -> list[str]:
        """The model's sampling settings its server does not read (not sent; start-up warns)."""
        return []

    @classmethod
    def request_body(cls, spec: ModelSpec, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body sent for ``request`` (without streaming fields; ``python -m arena prompt --json``)."""
        raise NotImplementedError(f"{cls.__name__} does not say what it sends (override request_body)")

    def __init__(self, spec: ModelSpec, timeouts: Timeouts, api_key: str | None = None) -> None:
        self.spec = spec
        self.timeouts = timeouts
        self.api_key = api_key

    @abstractmethod
    def stream(self, request: GenerationRequest, pace: float = 0.0) -> AsyncIterator[Chunk]: ...

    async def probe(self) -> ServerInfo:
        """One cheap request that shows the server is up and says what it serves.

        It never reaches the model itself (no generation), so it cannot disturb a running answer
        on servers that queue requests. Raises a :class:`arena.errors.BackendError` when the
        server does not answer or answers with an error. Backends override this; one that only
        overrides :meth:`health` and :meth:`info` (the older interface) is probed through them.
        """
        from arena.errors import BackendUnavailable

        if type(self).health is Backend.health:
            raise NotImplementedError(f"{type(self).__name__} must override probe() (or health() and info())")
        if not await self.health():
            raise BackendUnavailable("the health check failed")
        return await self.info() or ServerInfo()

    async def health(self) -> bool:
        """Whether :meth:`probe` succeeds."""
        return await self.info() is not None

    async def info(self) -> ServerInfo | None:
        """:meth:`probe`'s answer; None when the server is unreachable or answers an error."""
        from arena.errors import BackendError

        if type(self).probe is Backend.probe:
            raise NotImplementedError(f"{type(self).__name__} must override probe() (or health() and info())")
        try:
            return await self.probe()
        except BackendError:
            return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""
