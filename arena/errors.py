"""The arena's exception tree; every error a person may see carries a message to show them.

    Exception
    └── ArenaError                 every error the arena raises on purpose     msg.generic
        ├── ConfigError            bad settings, models.yaml, environment or    msg.misconfigured
        │                          command-line argument (start-up stops)
        ├── TemplateError          a conversation cannot be rendered for a model  msg.template
        │   └── PromptTooLong      the newest prompt alone exceeds the model's    msg.prompt_too_long
        │                          input limit
        ├── BackendError           a model server failed (the other side keeps     msg.backend
        │   │                      streaming)
        │   ├── BackendUnavailable connection refused, unknown host, server down   msg.backend_offline
        │   ├── BackendTimeout     no first token, stalled stream, deadline passed  msg.backend_timeout
        │   ├── BackendOverloaded  HTTP 429 / "busy"                               msg.backend_busy
        │   ├── BackendFailed      HTTP 4xx/5xx, an error event, malformed data    msg.backend_failed
        │   └── ContextExceeded    the server refused the prompt as too long for   msg.context_exceeded
        │                          its context (never counts against the model)
        ├── PromptRejected         the visitor's turn is refused: empty or too     msg.empty_prompt
        │   │                      long prompt, turn limit, busy, round over ...
        │   └── RateLimited        too many battles or votes from one visitor      msg.rate_limited
        ├── VoteRejected           no such battle, not finished, failed, voted     msg.vote_rejected
        ├── StorageError           the database is unavailable; nothing was        msg.storage
        │                          half-written
        ├── NotEnoughModels        fewer than two models can meet right now        msg.not_enough_models
        ├── SyncError              a journal, snapshot or sync target cannot be    msg.backup_unreachable
        │                          read or written (start-up stops)
        ├── ImportFormatError      a battle file cannot be read (also a            msg.bad_file
        │                          ValueError); names the file, line and fix
        ├── UnknownSlice           no leaderboard slice of that name, or none      msg.unknown_slice
        │                          with votes (also a ValueError)
        ├── NoCampaign             no campaign to judge                            msg.campaign_none
        └── CampaignDone           the visitor judged every comparison             msg.campaign_done

The right-hand column is each class's default :attr:`ArenaError.key`. An error carries two texts:

* ``error.message``, a :class:`~arena.messages.Message` (catalog key and parameters): what a
  visitor is told. The UI renders it in the visitor's language (``i18n.render(error.message,
  language)``); it never contains a URL, a model name or a stack trace. A raiser that needs a more
  precise message than its class's default passes one: ``PromptRejected("turn limit",
  message=Message("msg.turn_limit", {"n": 5}))``. There is no way to pass an English sentence: a
  message's key must be in every catalog (``Message`` refuses unknown keys; ``tests/test_i18n.py``
  requires all five catalogs to hold every key).
* ``str(error)``, the detail given to the constructor (English, for operators, logs and the CLI;
  it may name files, models and URLs). Without a detail it is the message in English.

Not in the tree, on purpose: ``ValueError``/``TypeError`` from pure functions given bad arguments
(``fit_ratings(alpha=-1)``), ``KeyError`` for an unknown catalog key or model name, and
``RuntimeError`` for a fit that cannot converge: those are programming errors, not something a
visitor or operator can fix. ``OSError`` (a missing file or folder) reaches the CLI as it is, which
turns it into one line of advice (``arena/__main__.py``).
"""

from __future__ import annotations

from typing import ClassVar

from arena.messages import Message

__all__ = [
    "ArenaError",
    "BackendError",
    "BackendFailed",
    "BackendOverloaded",
    "BackendTimeout",
    "BackendUnavailable",
    "CampaignDone",
    "ConfigError",
    "ContextExceeded",
    "ImportFormatError",
    "NoCampaign",
    "NotEnoughModels",
    "PromptRejected",
    "PromptTooLong",
    "RateLimited",
    "StorageError",
    "SyncError",
    "TemplateError",
    "UnknownSlice",
    "VoteRejected",
    "message_of",
]


class ArenaError(Exception):
    """Base of every error the arena raises on purpose.

    Parameters
    ----------
    detail:
        What happened, for operators and logs (``str(error)``); defaults to the message in English.
    message:
        What a visitor is told; defaults to the class's :attr:`key` without parameters.

    Raises
    ------
    TypeError
        When ``message`` is not a :class:`~arena.messages.Message` (an English sentence, say).
    """

    key: ClassVar[str] = "msg.generic"
    """The catalog key of the message a visitor sees when the raiser names none."""

    message: Message

    def __init__(self, detail: str = "", *, message: Message | None = None) -> None:
        if message is not None and not isinstance(message, Message):
            raise TypeError(f"message must be a Message(key, params), not {type(message).__name__}: {message!r}")
        self.message = message if message is not None else Message(self.key)
        super().__init__(detail or str(self.message))


class ConfigError(ArenaError):
    """Settings, models.yaml, an environment variable or a command-line argument is invalid."""

    key = "msg.misconfigured"


class TemplateError(ArenaError):
    """A conversation cannot be rendered into the prompt a model expects."""

    key = "msg.template"


class PromptTooLong(TemplateError):
    """The newest prompt alone does not fit the model's input limit."""

    key = "msg.prompt_too_long"


class BackendError(ArenaError):
    """A model server failed while answering."""

    key = "msg.backend"


class BackendUnavailable(BackendError):
    """Connection refused, unknown host, or the server is down."""

    key = "msg.backend_offline"


class BackendTimeout(BackendError):
    """No first token in time, a stalled stream, or the whole answer's deadline passed."""

    key = "msg.backend_timeout"


class BackendOverloaded(BackendError):
    """The server said it is busy (HTTP 429)."""

    key = "msg.backend_busy"


class BackendFailed(BackendError):
    """HTTP 4xx/5xx, an error event inside the stream, or malformed stream data."""

    key = "msg.backend_failed"


class ContextExceeded(BackendError):
    """The server said the prompt does not fit its context (HTTP 400/422 naming the context, or
    llama-cpp-python's empty HTTP 200). The arena's estimate let it through; the model is not at fault."""

    key = "msg.context_exceeded"


class PromptRejected(ArenaError):
    """The visitor's turn is refused before anything is sent (its message says why)."""

    key = "msg.empty_prompt"


class RateLimited(PromptRejected):
    """One visitor started too many battles or cast too many votes; the message says which limit."""

    key = "msg.rate_limited"


class VoteRejected(ArenaError):
    """The vote cannot be counted: no battle, answers unfinished or failed, or already voted."""

    key = "msg.vote_rejected"


class StorageError(ArenaError):
    """The database is unavailable; nothing was half-written."""

    key = "msg.storage"


class NotEnoughModels(ArenaError):
    """Fewer than two enabled, online models can meet, so no battle can start."""

    key = "msg.not_enough_models"


class SyncError(ArenaError):
    """A journal, snapshot or sync target cannot be read or written; start-up stops with advice."""

    key = "msg.backup_unreachable"


class ImportFormatError(ArenaError, ValueError):
    """A battle file cannot be read; the detail names the file, the line and what to fix.

    Also a ``ValueError`` (a value in the file is wrong), as it was before it joined the tree.
    """

    key = "msg.bad_file"


class UnknownSlice(ArenaError, ValueError):
    """No leaderboard slice has that name, or the slice has no counted votes yet.

    Also a ``ValueError`` (the name is a wrong value), as it was before it joined the tree.
    """

    key = "msg.unknown_slice"


class NoCampaign(ArenaError):
    """There is no campaign to judge (none, unknown, or fewer than two candidates with answers)."""

    key = "msg.campaign_none"


class CampaignDone(ArenaError):
    """The visitor has judged every comparison of the campaign."""

    key = "msg.campaign_done"


def message_of(error: BaseException) -> Message:
    """What a visitor is told about ``error``: its message, or the generic one for a non-arena error."""
    if isinstance(error, ArenaError):
        return error.message
    return Message(ArenaError.key)
