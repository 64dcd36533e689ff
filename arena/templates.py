"""Conversation -> the exact prompt a model sees; special-token neutralising; stop handling.

Prompts are rendered by ``transformers``' own chat-template renderer (a sandboxed Jinja environment
with ``trim_blocks``/``lstrip_blocks`` and ``raise_exception``), so a rendered prompt equals
``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``. A model's
format comes from exactly one of three models.yaml keys:

``template``       a built-in format name (see :data:`BUILTIN_FORMATS`), itself a Jinja template;
``chat_template``  inline Jinja, with ``bos_token``/``eos_token`` declared on the model;
``tokenizer``      a local directory holding ``tokenizer_config.json`` (``chat_template`` key) or
                   ``chat_template.jinja``; with a ``tokenizer.json`` there, tokens are counted exactly.

Safety: before rendering, every special token the model declares (``bos_token``, ``eos_token``,
``special_tokens``, plus the built-in format's or tokenizer's own) is *neutralised* in every message's
content by inserting a ZERO WIDTH SPACE (U+200B) after its first character: ``<s>`` becomes
``<\\u200bs>``, which looks the same on screen but can no longer be read as the token, so no text from a
visitor or a model can open a turn or forge a system prompt.

Token counting: exact with a local tokenizer; otherwise :func:`estimate_tokens`, a deliberately
generous estimate (each CJK character 1 token, other text UTF-8 bytes / 3, plus 10%).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from arena.backends import backend_class
from arena.backends.base import GenerationRequest
from arena.domain import Message
from arena.errors import ConfigError, PromptTooLong, TemplateError
from arena.registry import GenerationParams, ModelSpec

__all__ = [
    "BUILTIN_FORMATS",
    "ZWSP",
    "BuiltinFormat",
    "Prepared",
    "StopFilter",
    "check_spec",
    "count_tokens",
    "estimate_tokens",
    "neutralise",
    "prepare",
    "render_prompt",
    "special_tokens",
    "stop_strings",
]

ZWSP = "\u200b"

_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class BuiltinFormat:
    """A named prompt format: a Jinja chat template plus the tokens and roles it assumes."""

    jinja: str
    bos_token: str = ""
    eos_token: str = ""
    special_tokens: tuple[str, ...] = ()
    roles: Mapping[str, str] = field(default_factory=dict)
    stop: tuple[str, ...] = ()
    description: str = ""


# Shared opening: a leading system message is taken out of the list as `system`.
_SPLIT_SYSTEM = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set rest = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set rest = messages %}{% endif %}"
)
_ALTERNATE = (
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
)
_INST = ("[INST]", "[/INST]")
_SYS = ("<<SYS>>", "<</SYS>>")

BUILTIN_FORMATS: dict[str, BuiltinFormat] = {
    "llama-2": BuiltinFormat(
        description="Llama-2-Chat: <s>[INST] <<SYS>>\\nSYS\\n<</SYS>>\\n\\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST]",
        jinja=_SPLIT_SYSTEM
        + "{% for m in rest %}"
        + _ALTERNATE
        + "{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' }}"
        + r"{% if loop.first and system %}{{ '<<SYS>>\n' + system + '\n<</SYS>>\n\n' }}{% endif %}"
        + "{{ m['content'] + ' [/INST]' }}"
        + "{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
        special_tokens=_INST + _SYS,
    ),
    "mistral": BuiltinFormat(
        description="Mistral-Instruct: <s>[INST] SYS\\n\\nQ1 [/INST]A1</s>[INST] Q2 [/INST]",
        jinja=_SPLIT_SYSTEM
        + "{{ bos_token }}{% for m in rest %}"
        + _ALTERNATE
        + "{% if m['role'] == 'user' %}{{ '[INST] ' }}"
        + r"{% if loop.first and system %}{{ system + '\n\n' }}{% endif %}"
        + "{{ m['content'] + ' [/INST]' }}"
        + "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
        special_tokens=_INST,
    ),
    "chatml": BuiltinFormat(
        description="ChatML: <|im_start|>ROLE\\nTEXT<|im_end|>\\n ... <|im_start|>assistant\\n",
        jinja=r"{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        r"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
        eos_token="<|im_end|>",
        special_tokens=("<|im_start|>", "<|im_end|>", "<|endoftext|>"),
        stop=("<|im_end|>",),
    ),
    "breeze": BuiltinFormat(
        description="Breeze-7B-Instruct card: <s>SYS [INST] Q1 [/INST] A1 [INST] Q2 [/INST] ",
        jinja=_SPLIT_SYSTEM
        + "{{ bos_token }}{% if system %}{{ system + ' ' }}{% endif %}{% for m in rest %}"
        + _ALTERNATE
        + "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST] ' }}"
        + "{% else %}{{ m['content'] + ' ' }}{% endif %}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
        special_tokens=_INST,
    ),
    "bielik": BuiltinFormat(
        description="Bielik-7B-Instruct card's chat_template(): "
        "<s>[INST] <<SYS>>\\nSYS\\n<</SYS>>\\n\\nQ1 [/INST] A1</s>[INST] Q2 [/INST]",
        jinja=_SPLIT_SYSTEM
        + "{{ bos_token + '[INST] ' }}"
        + r"{% if system %}{{ '<<SYS>>\n' + system + '\n<</SYS>>\n\n' }}{% endif %}"
        + "{% for m in rest %}"
        + _ALTERNATE
        + "{% if m['role'] == 'user' %}{{ m['content'] + ' [/INST]' }}"
        + "{% else %}{{ ' ' + m['content'] + eos_token + '[INST] ' }}{% endif %}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
        special_tokens=_INST + _SYS,
    ),
    # The card's own template, quirks included: a first user message right after the system
    # message gets no "[INST] " (the system block already opened it).
    "shisa": BuiltinFormat(
        description="Shisa-7B card (llama-2 chat): <s>[INST] <<SYS>>\\nSYS\\n<</SYS>>\\n\\nQ1 [/INST] A1 </s>"
        "<s>[INST] Q2 [/INST]",
        jinja="{% for m in messages %}"
        "{% if m['role'] == 'user' %}{% if loop.index0 > 1 %}{{ bos_token + '[INST] ' }}{% endif %}"
        "{{ m['content'] + ' [/INST]' }}"
        r"{% elif m['role'] == 'system' %}{{ bos_token + '[INST] <<SYS>>\n' + m['content'] + '\n<</SYS>>\n\n' }}"
        "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
        special_tokens=_INST + _SYS,
    ),
    "huozi": BuiltinFormat(
        description="Huozi 3.5 card: <|beginofutterance|>ROLE\\nTEXT<|endofutterance|>\\n ... "
        "<|beginofutterance|>助手\\n (roles 系统/用户/助手)",
        jinja=r"{% for m in messages %}{{ '<|beginofutterance|>' + m['role'] + '\n' + m['content'] }}"
        r"{% if add_generation_prompt or not loop.last %}{{ '<|endofutterance|>\n' }}{% endif %}{% endfor %}"
        r"{% if add_generation_prompt and messages[-1]['role'] != '助手' %}{{ '<|beginofutterance|>助手\n' }}"
        "{% endif %}",
        bos_token="<s>",
        eos_token="</s>",
        special_tokens=("<|beginofutterance|>", "<|endofutterance|>"),
        roles={"system": "系统", "user": "用户", "assistant": "助手"},
        stop=("<|endofutterance|>",),
    ),
}


# ---------------------------------------------------------------------------------------------
# Neutralising and counting


def neutralise(text: str, tokens: Iterable[str]) -> str:
    """Make every occurrence of ``tokens`` in ``text`` harmless, keeping the text readable.

    A ZERO WIDTH SPACE is inserted after the first character of each occurrence (``<s>`` ->
    ``<\\u200bs>``). Inserting a character can never create a new occurrence, and the loop handles
    tokens that overlap themselves (``aaa`` with token ``aa``). One-character tokens and tokens that
    contain a zero width space are left alone (they cannot be broken this way).
    """
    usable = sorted({t for t in tokens if len(t) > 1 and ZWSP not in t}, key=len, reverse=True)
    if not usable:
        return text
    pattern = re.compile("|".join(re.escape(t) for t in usable))
    while pattern.search(text):
        text = pattern.sub(lambda m: m.group(0)[0] + ZWSP + m.group(0)[1:], text)
    return text


def _is_wide(ch: str) -> bool:
    code = ord(ch)
    return (
        0x2E80 <= code <= 0x9FFF  # CJK radicals, kana, CJK symbols and unified ideographs
        or 0xA960 <= code <= 0xA97F  # Hangul Jamo extended
        or 0xAC00 <= code <= 0xD7FF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF00 <= code <= 0xFFEF  # full-width forms
        or 0x20000 <= code <= 0x3FFFF  # CJK extensions B..
    )


def estimate_tokens(text: str) -> int:
    """A conservative token count for when no tokenizer is at hand.

    Each CJK/kana/hangul/full-width character counts as one token; all other text as its UTF-8
    byte length / 3 (English averages about 4 bytes per token on Llama/Mistral vocabularies); the sum
    is raised by 10% and rounded up. It overestimates for most text, so a prompt it accepts fits.
    """
    wide = 0
    other_bytes = 0
    for ch in text:
        if _is_wide(ch):
            wide += 1
        else:
            other_bytes += len(ch.encode("utf-8"))
    return math.ceil((wide + other_bytes / 3) * 1.1)


# ---------------------------------------------------------------------------------------------
# Resolving a model's format


@dataclass(frozen=True)
class _Tokenizer:
    template: str
    bos_token: str
    eos_token: str
    special_tokens: tuple[str, ...]
    counter: Any  # tokenizers.Tokenizer | None


@dataclass(frozen=True)
class _Format:
    jinja: str
    bos_token: str
    eos_token: str
    special_tokens: tuple[str, ...]
    roles: Mapping[str, str]
    stop: tuple[str, ...]
    counter: Any  # tokenizers.Tokenizer | None


def _token_text(value: Any) -> str:
    # tokenizer_config.json stores a token as a string or as a serialised AddedToken.
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return ""


@lru_cache(maxsize=64)
def _load_tokenizer_dir(path: str) -> _Tokenizer:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        if not directory.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", path):
            raise ConfigError(
                f"tokenizer {path!r} is not a local directory. It looks like a Hugging Face hub id, and this arena "
                "never downloads from the hub (it runs offline). Download the tokenizer files once on a machine "
                f"with internet (`hf download {path} --include 'tokenizer*' 'chat_template*' --local-dir DIR`), "
                "copy DIR here and set tokenizer: DIR."
            )
        raise ConfigError(f"tokenizer {path!r}: no such directory (tokenizer: must name a local directory).")
    config_file = directory / "tokenizer_config.json"
    jinja_file = directory / "chat_template.jinja"
    config: dict[str, Any] = {}
    if config_file.is_file():
        try:
            loaded = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"tokenizer {path!r}: cannot read {config_file.name}: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"tokenizer {path!r}: {config_file.name} is not a JSON object.")
        config = loaded
    elif not jinja_file.is_file():
        raise ConfigError(
            f"tokenizer {path!r}: the directory has neither tokenizer_config.json nor chat_template.jinja."
        )
    template: str | None = None
    if jinja_file.is_file():  # transformers >= 4.43 saves the template here; it wins over the config key
        template = jinja_file.read_text(encoding="utf-8")
    else:
        raw = config.get("chat_template")
        if isinstance(raw, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in raw if isinstance(t, dict)}
            raw = named.get("default")
        if isinstance(raw, str) and raw:
            template = raw
    if template is None:
        raise ConfigError(
            f"tokenizer {path!r}: no chat template found (no chat_template key in tokenizer_config.json, no "
            "chat_template.jinja); give template: or chat_template: instead."
        )
    specials: list[str] = [_token_text(config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
    specials += [_token_text(t) for t in config.get("additional_special_tokens") or []]
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if isinstance(entry, dict) and entry.get("special"):
            specials.append(_token_text(entry))
    counter = None
    tokenizer_file = directory / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        try:
            counter = Tokenizer.from_file(str(tokenizer_file))
        except Exception as e:  # tokenizers raises a bare Exception for malformed files
            raise ConfigError(f"tokenizer {path!r}: cannot load tokenizer.json: {e}") from None
    return _Tokenizer(
        template=template,
        bos_token=_token_text(config.get("bos_token")),
        eos_token=_token_text(config.get("eos_token")),
        special_tokens=tuple(s for s in specials if s),
        counter=counter,
    )


def _format(spec: ModelSpec) -> _Format | None:
    """The model's resolved format, or None when it has none (a base model, or an openai model
    whose server owns the template)."""
    base_bos = base_eos = ""
    base_specials: tuple[str, ...] = ()
    base_roles: Mapping[str, str] = {}
    base_stop: tuple[str, ...] = ()
    counter = None
    if spec.template:
        try:
            builtin = BUILTIN_FORMATS[spec.template]
        except KeyError:
            raise ConfigError(
                f"model {spec.name!r}: unknown template {spec.template!r}; built-in formats: "
                f"{', '.join(BUILTIN_FORMATS)} (or give chat_template: or tokenizer:)."
            ) from None
        jinja = builtin.jinja
        base_bos, base_eos, base_specials = builtin.bos_token, builtin.eos_token, builtin.special_tokens
        base_roles, base_stop = builtin.roles, builtin.stop
    elif spec.chat_template:
        jinja = spec.chat_template
    elif spec.tokenizer:
        try:
            loaded = _load_tokenizer_dir(spec.tokenizer)
        except ConfigError as e:
            raise ConfigError(f"model {spec.name!r}: {e}") from None
        jinja = loaded.template
        base_bos, base_eos, base_specials, counter = (
            loaded.bos_token,
            loaded.eos_token,
            loaded.special_tokens,
            loaded.counter,
        )
    else:
        return None
    bos = spec.bos_token or base_bos
    eos = spec.eos_token or base_eos
    specials = tuple(dict.fromkeys(t for t in (bos, eos, *base_specials, *spec.special_tokens) if t))
    return _Format(
        jinja=jinja,
        bos_token=bos,
        eos_token=eos,
        special_tokens=specials,
        roles={**base_roles, **spec.roles},
        stop=spec.stop or base_stop,
        counter=counter,
    )


def special_tokens(spec: ModelSpec) -> tuple[str, ...]:
    """Every string neutralised in this model's message content."""
    fmt = _format(spec)
    if fmt is not None:
        return fmt.special_tokens
    return tuple(dict.fromkeys(t for t in (spec.bos_token, spec.eos_token, *spec.special_tokens) if t))


def stop_strings(spec: ModelSpec) -> tuple[str, ...]:
    """The model's stop strings: models.yaml ``stop``, else its built-in format's."""
    fmt = _format(spec)
    return fmt.stop if fmt is not None else spec.stop


def count_tokens(spec: ModelSpec, text: str) -> int:
    """Tokens in ``text`` for this model: exact with a local ``tokenizer:``, else :func:`estimate_tokens`."""
    fmt = _format(spec)
    if fmt is not None and fmt.counter is not None:
        return len(fmt.counter.encode(text, add_special_tokens=False).ids)
    return estimate_tokens(text)


# ---------------------------------------------------------------------------------------------
# Rendering


def _render_jinja(spec: ModelSpec, fmt: _Format, messages: list[dict[str, str]]) -> str:
    import jinja2

    # The arena only renders templates: transformers' advice that PyTorch is missing is noise here.
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils.chat_template_utils import render_jinja_template

    try:
        # Annotated as str, but transformers 5 returns (rendered chats, generation indices).
        result: Any = render_jinja_template(
            conversations=[messages],
            chat_template=fmt.jinja,
            add_generation_prompt=True,
            bos_token=fmt.bos_token,
            eos_token=fmt.eos_token,
        )
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"model {spec.name!r}: its chat template is not valid Jinja (line {e.lineno}): {e}") from None
    except jinja2.TemplateError as e:
        raise TemplateError(f"model {spec.name!r}: the chat template rejected the conversation: {e}") from None
    return str(result[0][0])


def _validate(spec: ModelSpec, conversation: Sequence[Message]) -> None:
    if not conversation:
        raise TemplateError(f"model {spec.name!r}: the conversation is empty.")
    for i, message in enumerate(conversation):
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise TemplateError(f"message #{i + 1}: needs a role of system, user or assistant.")
        if not isinstance(message.get("content"), str):
            raise TemplateError(f"message #{i + 1}: content must be a string.")
        if message["role"] == "system" and i != 0:
            raise TemplateError(f"message #{i + 1}: a system message may only come first.")
    if conversation[-1]["role"] != "user":
        raise TemplateError(f"model {spec.name!r}: the conversation must end with the user's message.")


@dataclass(frozen=True)
class _Parts:
    system: str | None
    groups: tuple[tuple[Message, ...], ...]  # history, each group opened by a user message
    last: Message


def _split(spec: ModelSpec, conversation: Sequence[Message]) -> _Parts:
    _validate(spec, conversation)
    system: str | None = None
    body = list(conversation)
    if body[0]["role"] == "system":
        system = body.pop(0)["content"]
    elif spec.system_prompt:
        system = spec.system_prompt
    groups: list[list[Message]] = []
    for message in body[:-1]:
        if message["role"] == "user" or not groups:
            groups.append([])
        groups[-1].append(message)
    return _Parts(system, tuple(tuple(g) for g in groups), body[-1])


def _messages(spec: ModelSpec, parts: _Parts, dropped: int) -> list[dict[str, str]]:
    """Role-mapped, neutralised messages: system, the kept history, the newest user message."""
    fmt = _format(spec)
    roles = fmt.roles if fmt is not None else spec.roles
    tokens = special_tokens(spec)
    kept: list[Message] = []
    if parts.system is not None:
        kept.append({"role": "system", "content": parts.system})
    for group in parts.groups[dropped:]:
        kept.extend(group)
    kept.append(parts.last)
    return [{"role": roles.get(m["role"], m["role"]), "content": neutralise(m["content"], tokens)} for m in kept]


def _base_prompt(spec: ModelSpec, parts: _Parts) -> str:
    text = neutralise(parts.last["content"], special_tokens(spec))
    try:
        return spec.base_prompt.format(prompt=text)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"model {spec.name!r}: base_prompt {spec.base_prompt!r} cannot be filled ({e}); "
            "write literal braces as {{ and }}."
        ) from None


def _render_parts(spec: ModelSpec, parts: _Parts, dropped: int) -> str:
    if spec.kind == "base":
        return _base_prompt(spec, parts)
    fmt = _format(spec)
    if fmt is None:
        raise ConfigError(
            f"model {spec.name!r}: no prompt format configured; give template:, chat_template: or tokenizer: "
            f"(built-in formats: {', '.join(BUILTIN_FORMATS)})."
        )
    return _render_jinja(spec, fmt, _messages(spec, parts, dropped))


def render_prompt(spec: ModelSpec, conversation: Sequence[Message]) -> str:
    """The exact text the model is given for ``conversation`` (no truncation).

    Adds ``spec.system_prompt`` when the conversation has no system message, maps roles, neutralises
    special tokens and renders with the model's format, adding the generation prompt. For a base
    model it is ``spec.base_prompt`` filled with the newest user message. For an openai model it is
    what its server builds from the same messages with the configured template.

    Raises
    ------
    TemplateError
        The conversation is malformed (empty, does not end with the user, roles do not alternate).
    ConfigError
        The model has no usable format (none configured, unknown built-in, unreadable tokenizer).
    """
    return _render_parts(spec, _split(spec, conversation), 0)


def check_spec(spec: ModelSpec) -> None:
    """Render a short sample conversation, so a broken format stops start-up, not a battle.

    Raises
    ------
    ConfigError
        The format cannot be loaded or rendered.
    """
    sample: list[Message] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "Bye"},
    ]
    if spec.kind == "chat" and not backend_class(spec.backend).renders_own_prompt and _format(spec) is None:
        raise ConfigError(
            f"model {spec.name!r}: a {spec.backend} chat model needs template:, chat_template: or tokenizer:."
        )
    if spec.kind == "base" or _format(spec) is not None:
        try:
            render_prompt(spec, sample)
        except TemplateError as e:
            raise ConfigError(f"model {spec.name!r}: its format cannot render a simple conversation: {e}") from None


# ---------------------------------------------------------------------------------------------
# Preparing a request


@dataclass(frozen=True)
class Prepared:
    """What to send for one turn, and how much history had to go."""

    request: GenerationRequest
    dropped_turns: int
    text: str | None = None  # the rendered prompt (BOS included); None for an openai model without a format
    input_tokens: int | None = None  # counted exactly or estimated (see count_tokens)


def _capped(params: GenerationParams, cap: int | None) -> GenerationParams:
    if cap is None:
        return params
    if cap <= 0:
        raise ConfigError(f"max_new_tokens cap must be positive, got {cap}.")
    wanted = params.max_new_tokens
    return params.model_copy(update={"max_new_tokens": cap if wanted is None else min(wanted, cap)})


def _message_tokens(spec: ModelSpec, messages: list[dict[str, str]]) -> int:
    # No template here: count the contents plus a few tokens per message for the role markers.
    return sum(count_tokens(spec, m["content"]) + count_tokens(spec, m["role"]) + 4 for m in messages)


def prepare(
    spec: ModelSpec,
    conversation: Sequence[Message],
    *,
    max_input_tokens: int | None = None,
    max_new_tokens_cap: int | None = None,
    continuation: bool = False,
) -> Prepared:
    """Build the request for the model's answer to the newest user message.

    With ``continuation`` (a continuation battle) a chat model is treated as a base model: it is
    given the newest message as raw text (its ``base_prompt`` filled, no chat format, no system
    prompt). A base model's raw text goes to TGI as the prompt and to an OpenAI-compatible server
    as a ``/v1/completions`` prompt (TGI's Messages API, which has no completions route, gets it as
    the one user message).

    The oldest user+assistant turns are dropped until the prompt fits the input limit
    (``max_input_tokens``, else ``spec.context_length`` minus the capped ``max_new_tokens``); the
    system prompt is always kept. For a backend that does not render its own prompt (tgi: see
    ``Backend.renders_own_prompt``) the request carries the rendered prompt without its leading
    ``bos_token``, because TGI's tokenizer adds BOS itself (it tokenizes with special tokens on), so
    the model sees exactly one. Otherwise (openai) it carries the role-mapped, neutralised messages.

    Raises
    ------
    PromptTooLong
        The system prompt and the newest message alone exceed the limit; nothing should be sent.
    TemplateError, ConfigError
        As :func:`render_prompt`.
    """
    if continuation and spec.kind != "base":
        spec = spec.model_copy(update={"kind": "base", "system_prompt": None})
    params = _capped(spec.params, max_new_tokens_cap)
    limit = max_input_tokens
    if limit is None and spec.context_length is not None:
        limit = spec.context_length - (params.max_new_tokens or 0)
        if limit <= 0:
            raise ConfigError(
                f"model {spec.name!r}: context_length {spec.context_length} leaves no room for the prompt "
                f"after max_new_tokens {params.max_new_tokens}."
            )
    parts = _split(spec, conversation)
    fmt = _format(spec)
    can_render = spec.kind == "base" or fmt is not None
    server_renders = backend_class(spec.backend).renders_own_prompt
    if not server_renders and not can_render:
        _render_parts(spec, parts, 0)  # raises the ConfigError naming the missing format
    max_drop = 0 if spec.kind == "base" else len(parts.groups)
    for dropped in range(max_drop + 1):
        text = _render_parts(spec, parts, dropped) if can_render else None
        messages = _messages(spec, parts, dropped) if spec.kind == "chat" else []
        used = count_tokens(spec, text) if text is not None else _message_tokens(spec, messages)
        if limit is None or used <= limit:
            break
    else:
        raise PromptTooLong(
            f"model {spec.name!r}: the newest prompt needs about {used} tokens with the system prompt, "
            f"over the input limit of {limit}."
        )
    stop = stop_strings(spec)
    if not server_renders:
        assert text is not None
        bos = fmt.bos_token if fmt is not None else spec.bos_token
        prompt = text[len(bos) :] if bos and text.startswith(bos) else text
        request = GenerationRequest(params=params, prompt=prompt, stop=stop)
    elif spec.kind == "base" and spec.completes_raw_text:
        assert text is not None
        request = GenerationRequest(params=params, prompt=text, stop=stop)
    else:
        if spec.kind == "base":
            assert text is not None
            user_role = spec.roles.get("user", "user")
            messages = [{"role": user_role, "content": text}]
        request = GenerationRequest(params=params, messages=tuple(messages), stop=stop)
    return Prepared(request=request, dropped_turns=dropped, text=text, input_tokens=used)


# ---------------------------------------------------------------------------------------------
# Streaming


class StopFilter:
    """Cuts a streamed answer at its first stop string, even one split across chunks.

    ``feed`` returns the text that is safe to show now: it holds back a tail that could be the
    start of a stop string, and after a stop string has been seen it returns ``""`` for ever.
    ``flush`` releases the held-back tail at the end of the stream.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def _held_tail(self, text: str) -> int:
        # The longest tail of `text` that is a proper prefix of some stop string.
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        buffer = self._held + text
        found = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return buffer[: min(found)]
        keep = self._held_tail(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        out, self._held = ("" if self.stopped else self._held), ""
        return out
