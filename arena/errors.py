"""The arena's exception tree; every error a person may see carries plain-language advice.

    ArenaError
    ├── ConfigError              bad settings, models.yaml or environment (start-up stops)
    ├── TemplateError            a conversation cannot be rendered for a model
    │   └── PromptTooLong        the newest prompt alone exceeds the model's input limit
    ├── BackendError             a model server failed (the other side keeps streaming)
    │   ├── BackendUnavailable   connection refused, unknown host, server down
    │   ├── BackendTimeout       no first token, stalled stream, or total deadline passed
    │   ├── BackendOverloaded    HTTP 429 / "busy"
    │   ├── BackendFailed        HTTP 4xx/5xx, an error event, malformed stream data
    │   └── ContextExceeded      the server refused the prompt as too long for its context
    │                            (not the model's failure: it never counts against it)
    ├── PromptRejected           the visitor's prompt is empty or too long
    │   └── RateLimited          too many battles or votes from one visitor
    ├── VoteRejected             no such battle, not finished, failed, or already voted
    └── StorageError             the database is unavailable; nothing was half-written

``user_message`` is the text shown to a visitor: it never contains a URL, a model name or a
stack trace. ``str(error)`` is for operators and logs and may contain details.
"""

from __future__ import annotations


class ArenaError(Exception):
    """Base of every error the arena raises on purpose."""

    user_message = "Something went wrong. Please start a new round."

    def __init__(self, message: str = "", *, user_message: str | None = None) -> None:
        super().__init__(message or self.user_message)
        if user_message is not None:
            self.user_message = user_message


class ConfigError(ArenaError):
    """Settings, models.yaml or an environment variable is invalid; start-up stops."""

    user_message = "The arena is misconfigured. Please tell its operator."


class TemplateError(ArenaError):
    """A conversation cannot be rendered into the prompt a model expects."""

    user_message = "This conversation cannot be sent to the models. Please start a new round."


class PromptTooLong(TemplateError):
    """The newest prompt alone does not fit the model's input limit."""

    user_message = "Your message is too long for these models. Please shorten it and send it again."


class BackendError(ArenaError):
    """A model server failed while answering."""

    user_message = "This model could not answer. Please start a new round."


class BackendUnavailable(BackendError):
    user_message = "This model is offline right now. Please start a new round."


class BackendTimeout(BackendError):
    user_message = "This model took too long to answer. Please start a new round."


class BackendOverloaded(BackendError):
    user_message = "This model is busy right now. Please try again in a minute."


class BackendFailed(BackendError):
    user_message = "This model ran into an error while answering. Please start a new round."


class ContextExceeded(BackendError):
    """The server said the prompt does not fit its context (HTTP 400/422 naming the context, or
    llama-cpp-python's empty HTTP 200). The arena's estimate let it through; the model is not at fault."""

    user_message = (
        "This conversation is too long for one of the models. Please start a new round with a shorter message."
    )


class PromptRejected(ArenaError):
    user_message = "Please type a message first."


class RateLimited(PromptRejected):
    """One visitor started too many battles or cast too many votes; ``user_message`` says when to retry."""

    user_message = "You are going a little fast. Please wait a minute and try again."


class VoteRejected(ArenaError):
    user_message = "This vote cannot be counted. Please start a new round."


class StorageError(ArenaError):
    user_message = "Your vote could not be saved just now. Please try again in a moment."
