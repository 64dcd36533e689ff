"""models.yaml -> typed model specs; every error names the file, the model and the field."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from arena.errors import ConfigError

__all__ = ["SERVERS", "GenerationParams", "ModelSpec", "Registry", "Server", "load_registry", "parse_registry"]

Server = Literal["tgi", "tgi-messages", "vllm", "llama-server", "llama-cpp-python", "ollama", "openai"]
SERVERS: tuple[Server, ...] = ("tgi", "tgi-messages", "vllm", "llama-server", "llama-cpp-python", "ollama", "openai")
"""Server flavours the arena knows the quirks of (docs/models.md, "Model servers")."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class GenerationParams(BaseModel):
    """Sampling settings sent with every request; unset ones are left to the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, gt=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    max_new_tokens: int | None = Field(default=None, gt=0)
    do_sample: bool | None = None
    seed: int | None = None
    typical_p: float | None = Field(default=None, gt=0, le=1)


class ModelSpec(BaseModel):
    """One model of the roster, exactly as models.yaml declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # A backend kind: a key of arena.backends.BACKEND_KINDS (tgi, openai).
    backend: str
    # Which server answers (its quirks: parameter names, stop reasons, usage, context errors, health);
    # None: the backend's default_server ("tgi" for backend tgi, "openai", a generic OpenAI-compatible
    # server, for backend openai).
    server: Server | None = None
    url: str = Field(min_length=1)
    model: str | None = None
    api_key_env: str | None = None
    # Prompt format (tgi renders here; for openai it documents what the server builds).
    template: str | None = None
    chat_template: str | None = None
    tokenizer: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    special_tokens: tuple[str, ...] = ()
    roles: dict[str, str] = Field(default_factory=dict)
    system_prompt: str | None = None
    base_prompt: str = "{prompt}"
    stop: tuple[str, ...] = ()
    # Token ids that end an answer on OpenAI-compatible servers (vLLM `stop_token_ids`), for stop
    # tokens the server strips from the text before matching `stop` strings.
    stop_token_ids: tuple[int, ...] = ()
    params: GenerationParams = Field(default_factory=GenerationParams)
    context_length: int | None = Field(default=None, gt=0)
    kind: Literal["chat", "base"] = "chat"
    # Whether this chat model may also play continuation battles (raw text continued, against a base
    # model); None: yes where its server completes raw text (see ``ModelSpec.completes_raw_text``).
    continuation: bool | None = None
    aliases: tuple[str, ...] = ()
    weight: float = Field(default=1.0, ge=0)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from arena.backends import BACKEND_KINDS  # the backends import this module

        if value not in BACKEND_KINDS:
            raise ValueError(f"unknown backend {value!r}; the known kinds are {', '.join(BACKEND_KINDS)}")
        return value

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        from arena.templates import BUILTIN_FORMATS  # templates imports this module

        if value is not None and value not in BUILTIN_FORMATS:
            raise ValueError(
                f"unknown template {value!r}; the built-in formats are {', '.join(BUILTIN_FORMATS)} "
                "(or give chat_template: or tokenizer: instead)"
            )
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - {"system", "user", "assistant"}
        if unknown:
            raise ValueError(f"only system, user and assistant can be renamed, not {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _backend_needs(self) -> ModelSpec:
        from arena.backends import backend_class  # the backends import this module

        backend_class(self.backend).check_spec(self)
        formats = [k for k in ("template", "chat_template", "tokenizer") if getattr(self, k)]
        if len(formats) > 1:
            raise ValueError(f"give only one of template, chat_template, tokenizer (got {formats})")
        if "{prompt}" not in self.base_prompt:
            raise ValueError("base_prompt must contain {prompt}")
        if self.continuation and not self.completes_raw_text:
            raise ValueError(
                f"continuation needs raw-text completion, which server {self.server_kind} does not offer "
                "(TGI's Messages API is only a chat route)"
            )
        if self.kind == "base" and self.continuation is False:
            raise ValueError("a base model only plays continuation battles; continuation: false would bench it")
        return self

    @property
    def server_kind(self) -> Server:
        """The server flavour, with the backend's default filled in."""
        if self.server is not None:
            return self.server
        from arena.backends import backend_class  # the backends import this module

        return backend_class(self.backend).default_server

    @property
    def completes_raw_text(self) -> bool:
        """Whether the server can continue raw text: TGI's native route, or ``/v1/completions``.

        TGI's Messages API (``tgi-messages``) is only a chat route, so it cannot (the backend decides).
        """
        from arena.backends import backend_class  # the backends import this module

        return backend_class(self.backend).completes_raw_text(self)

    @property
    def plays_continuation(self) -> bool:
        """Whether this model may play continuation battles (every base model; chat models that can)."""
        if self.kind == "base":
            return True
        return self.completes_raw_text if self.continuation is None else (self.continuation and self.completes_raw_text)

    @property
    def identity_names(self) -> tuple[str, ...]:
        """The names a model is known by: roster name, aliases, served id with and without its organisation.

        The one source of what names a model: :mod:`arena.identity` looks for these in answers.
        """
        found = [self.name, *self.aliases]
        if self.model:
            found += [self.model, self.model.rsplit("/", 1)[-1]]
        return tuple(dict.fromkeys(s for s in found if s))


class _RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[dict[str, Any]]


class Registry:
    """The validated roster: look models up by name, list the enabled ones."""

    def __init__(self, models: list[ModelSpec], source: str = "models.yaml") -> None:
        self.source = source
        self._models = {m.name: m for m in models}

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self._models[name]
        except KeyError:
            raise ConfigError(f"{self.source}: no model named {name!r}; known: {', '.join(self._models)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._models

    @property
    def enabled(self) -> list[ModelSpec]:
        return [m for m in self._models.values() if m.enabled]


def _expand(value: Any, environ: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if var in environ:
                return environ[var]
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {var} is not set and has no default (write ${{{var}:-default}})."
            )

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, environ, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, environ, f"{where}.{k}") for k, v in value.items()}
    return value


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(model)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against docs/configuration.md)"
        elif e["type"] == "value_error":  # our own validators' sentences, without pydantic's "Value error, "
            msg = str(e.get("ctx", {}).get("error", msg))
        parts.append(f"field '{loc}': {msg}")
    return "; ".join(parts)


def parse_registry(data: Any, *, source: str = "models.yaml", environ: Mapping[str, str] | None = None) -> Registry:
    """Validate already-parsed YAML data into a :class:`Registry`.

    Raises
    ------
    ConfigError
        Naming ``source``, the model and the field at fault.
    """
    environ = os.environ if environ is None else environ
    try:
        roster = _RosterFile.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_describe(e)} (the file needs a top-level 'models:' list)") from None
    models: list[ModelSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(roster.models, start=1):
        label = f"model #{index}" + (f" ({raw.get('name')!r})" if isinstance(raw, dict) and raw.get("name") else "")
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: {label}: each model must be a mapping of keys to values.")
        expanded = _expand(raw, environ, f"{source}: {label}: field")
        try:
            spec = ModelSpec.model_validate(expanded)
        except ValidationError as e:
            raise ConfigError(f"{source}: {label}: {_describe(e)}") from None
        if spec.name in seen:
            raise ConfigError(f"{source}: {label}: the name {spec.name!r} is used twice.")
        seen.add(spec.name)
        models.append(spec)
    if not models:
        raise ConfigError(f"{source}: the 'models:' list is empty; add at least two models.")
    return Registry(models, source)


def load_registry(path: str | Path, environ: Mapping[str, str] | None = None) -> Registry:
    """Read and validate a models.yaml file.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, or any model is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass --config PATH or set ARENA_CONFIG).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_registry(data, source=str(path), environ=environ)
