"""The settings table: every knob the arena has, with its default, environment variable and help.

Settings are built from a mapping (normally ``os.environ``) plus explicit overrides (command-line
flags), so tests pass a dict instead of patching the environment. ``SETTINGS`` is the single
source for ``--help``, the README's settings table and the check that every setting is documented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from arena.domain import IntervalMethod, PairingStrategy, TiePolicy
from arena.errors import ConfigError
from arena.i18n import LANGUAGES

DEFAULT_ROSTER = "models.yaml"
ROOT = Path(__file__).resolve().parents[1]  # the checkout: models.yaml and db/ live here


def roster_path(config: str | None) -> str:
    """The roster file to read: the default names the checkout's models.yaml whatever the working
    directory (``python -m arena`` and ``python app.py`` run from anywhere); any other path is the
    operator's, relative to where they stand."""
    if not config or config == DEFAULT_ROSTER:
        return str(ROOT / DEFAULT_ROSTER)
    return config


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _setting(default: Any, env: str | None, help: str, *, flag: str | None = None) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "flag": flag})


@dataclass(frozen=True)
class Settings:
    """Every arena setting. Build with :meth:`Settings.load`; instances are immutable."""

    config: str = _setting(
        DEFAULT_ROSTER,
        "ARENA_CONFIG",
        "Path of the model roster (default: the models.yaml next to app.py, from any working directory).",
        flag="--config",
    )
    db: str = _setting(
        "",
        "DATABASE_URL",
        "SQLAlchemy database URL, e.g. sqlite:///db/arena.sqlite3 or "
        "postgresql+psycopg://user@host/db. Empty: db/arena.sqlite3 (db/demo.sqlite3 in demo mode).",
        flag="--db",
    )
    host: str = _setting("127.0.0.1", "GRADIO_SERVER_NAME", "Interface to listen on (0.0.0.0 for all).", flag="--host")
    port: int = _setting(7860, "GRADIO_SERVER_PORT", "Port to listen on (0 picks a free port).", flag="--port")
    demo: bool = _setting(
        False,
        "ARENA_DEMO",
        "Start local demo model servers (TGI and OpenAI protocols) and use the demo roster; "
        "needs no GPU and no network.",
        flag="--demo",
    )
    connect_timeout: float = _setting(5.0, "ARENA_CONNECT_TIMEOUT", "Seconds to connect to a model server.")
    first_token_timeout: float = _setting(
        60.0, "ARENA_FIRST_TOKEN_TIMEOUT", "Seconds to wait for a model's first token."
    )
    read_timeout: float = _setting(
        30.0,
        "ARENA_READ_TIMEOUT",
        "Seconds a stream may stay silent after its first token before it counts as stalled.",
    )
    total_timeout: float = _setting(
        300.0, "ARENA_TOTAL_TIMEOUT", "Deadline in seconds for one whole answer, however it streams."
    )
    concurrency_limit: int = _setting(
        256,
        "ARENA_CONCURRENCY",
        "How many battles (and other page events) may run at the same time: Gradio's queue slots and each "
        "event's concurrency limit.",
    )
    queue_size: int = _setting(
        1024,
        "ARENA_QUEUE_SIZE",
        "How many requests may wait in the queue; beyond it visitors are told the arena is busy.",
    )
    session_ttl: float = _setting(
        3600.0,
        "ARENA_SESSION_TTL",
        "Seconds of inactivity after which a visitor's page session is forgotten (its memory freed; the visitor "
        "then starts afresh); 0: never.",
    )
    session_capacity: int = _setting(
        2000,
        "ARENA_SESSION_CAPACITY",
        "Most page sessions kept in memory (about 0.15 MB each); beyond it the least recently used one is forgotten.",
    )
    max_turns: int = _setting(
        8,
        "ARENA_MAX_TURNS",
        "Turns (a prompt and both answers) one battle may have, follow-ups included; then the visitor votes or "
        "starts a new round.",
    )
    max_regenerations: int = _setting(
        3,
        "ARENA_MAX_REGENERATIONS",
        "Times one battle's answers may be regenerated (each costs both model servers a new answer); 0: never.",
    )
    stream_interval: float = _setting(
        0.1,
        "ARENA_STREAM_INTERVAL",
        "Shortest time between two screen updates of a battle while answers stream, in seconds (tokens are "
        "coalesced; an update also waits for a few words of new text, or half a second, so a battle's cost "
        "follows its tokens, not its duration).",
    )
    update_rate: float = _setting(
        150.0,
        "ARENA_UPDATE_RATE",
        "Screen updates per second shared by all battles streaming at once: with n battles each gets one at most "
        "every max(stream_interval, n / update_rate) s (each update costs the server CPU whatever it carries). "
        "A side's first token and the final answers are never held back. 0: no limit.",
    )
    read_pace: float = _setting(
        0.1,
        "ARENA_READ_PACE",
        "Once an answer flows, each side reads its model server at most this often (s; or every screen update "
        "interval, if shorter), taking every token that arrived meanwhile in one read (a read per token costs the "
        "server CPU; a busy server already reads several at once). Text may appear up to twice this later, an "
        "answer's end about 1.5 times this on average. 0: read every token as it arrives.",
    )
    max_prompt_chars: int = _setting(
        4000, "ARENA_MAX_PROMPT_CHARS", "Longest prompt a visitor may send, in characters."
    )
    max_reason_chars: int = _setting(
        1000, "ARENA_MAX_REASON_CHARS", 'Longest optional "why?" text kept with a vote, in characters.'
    )
    max_request_bytes: int = _setting(
        65536,
        "ARENA_MAX_REQUEST_BYTES",
        "Largest HTTP request body the server reads (bytes); a bigger one is refused (HTTP 413) before it is read. "
        "Must hold the longest prompt: at least 12 x ARENA_MAX_PROMPT_CHARS + 4096.",
    )
    max_new_tokens: int = _setting(
        1024,
        "ARENA_MAX_NEW_TOKENS",
        "Tokens per answer for every model (the same budget for all; a model's own smaller "
        "params.max_new_tokens wins); 0 sends none and leaves it to each server's default.",
    )
    client_salt: str = _setting(
        "",
        "ARENA_CLIENT_SALT",
        "Secret salt for hashing visitor identifiers; empty: a random salt per process (set it when running replicas).",
    )
    demo_token_rate: float = _setting(40.0, "ARENA_DEMO_TOKEN_RATE", "Tokens per second the demo model servers stream.")
    demo_first_token_delay: float = _setting(
        0.2, "ARENA_DEMO_FIRST_TOKEN_DELAY", "Seconds before the demo model servers send their first token."
    )
    tie_policy: TiePolicy = _setting(
        "half", "ARENA_TIE_POLICY", "How ties and both-bad votes enter the fit: half (half a win each way) or exclude."
    )
    bothbad_policy: Literal["", TiePolicy] = _setting(
        "",
        "ARENA_BOTHBAD_POLICY",
        "How 'both bad' votes enter the fit, apart from ties: half or exclude; empty: as ARENA_TIE_POLICY.",
    )
    alpha: float = _setting(
        0.0, "ARENA_ALPHA", "choix regularisation strength for the Bradley-Terry fit (0: plain maximum likelihood)."
    )
    interval: IntervalMethod = _setting(
        "bootstrap",
        "ARENA_INTERVAL",
        "Which 95% interval the leaderboard shows and ranks by: bootstrap (over battles) or sandwich (robust, "
        "instant). Both are always in ratings.csv.",
    )
    bootstrap_rounds: int = _setting(
        1000,
        "ARENA_BOOTSTRAP_ROUNDS",
        "Bootstrap rounds per leaderboard fit (about 1 s for 20 models at 1000; fits are cached until a vote "
        "arrives). 0 skips the bootstrap (then ARENA_INTERVAL must be sandwich).",
    )
    min_votes: int = _setting(30, "ARENA_MIN_VOTES", "Models with fewer votes in a leaderboard are marked preliminary.")
    log_level: str = _setting("INFO", "ARENA_LOG_LEVEL", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    pairing: PairingStrategy = _setting(
        "uniform",
        "ARENA_PAIRING",
        "How the next pair is chosen: uniform, weighted (by models.yaml weight) or active (pairs whose order "
        "is still unsure; see docs/active-sampling.md).",
    )
    pairing_floor: float = _setting(
        0.1,
        "ARENA_PAIRING_FLOOR",
        "Active pairing: share of draws spread uniformly over the eligible pairs (0 to 1), so no pair is starved.",
    )
    pairing_warmup_votes: int = _setting(
        30, "ARENA_PAIRING_WARMUP_VOTES", "Active pairing: a model with fewer votes is drawn more often (warm-up)."
    )
    pairing_refresh_votes: int = _setting(
        20,
        "ARENA_PAIRING_REFRESH_VOTES",
        "Active pairing: refit the pair scores after this many new votes (python -m arena simulate refits as often).",
    )
    ipw: bool = _setting(
        False,
        "ARENA_IPW",
        "Fit the leaderboard and its audit (rank ranges, tiers) with each battle weighted by (1/K)/propensity "
        "(its stored uniform_propensity / propensity; 1 for battles stored without them), so a non-uniform "
        "pairing cannot tilt the ratings; costs some precision. python -m arena ratings and audit follow it "
        "(--ipw / --no-ipw).",
    )
    trusted_proxy_hops: int = _setting(
        0,
        "ARENA_TRUSTED_PROXY_HOPS",
        "How many reverse proxies in front of the arena append to X-Forwarded-For; 0 ignores the header "
        "(anyone can forge it) and uses the connecting address. An IPv6 visitor is their /64 network.",
    )
    battles_per_minute: int = _setting(
        20,
        "ARENA_BATTLES_PER_MINUTE",
        "New battles one visitor (one IPv4 address or IPv6 /64 network) may start per minute; 0: no limit.",
    )
    votes_per_hour: int = _setting(
        240, "ARENA_VOTES_PER_HOUR", "Votes one visitor (one IPv4 address or IPv6 /64) may cast per hour; 0: no limit."
    )
    min_read_seconds: float = _setting(
        2.0,
        "ARENA_MIN_READ_SECONDS",
        "A vote cast sooner than this after both answers finished is kept but flagged too_fast (left out of ratings).",
    )
    replay_window: float = _setting(
        604800.0,
        "ARENA_REPLAY_WINDOW",
        "Seconds around an anonymous battle in which the same visitor sending its prompt (or nearly) in "
        "side-by-side mode flags the battle's vote replayed (left out of ratings); while the battle is open "
        "such a replay is refused. 0: off.",
    )
    health_interval: float = _setting(
        15.0,
        "ARENA_HEALTH_INTERVAL",
        "Seconds between background health checks of every model server (TGI /health, OpenAI /v1/models); "
        "0 turns them off.",
    )
    breaker_failures: int = _setting(
        3,
        "ARENA_BREAKER_FAILURES",
        "Failed answers in a row after which a model leaves the pairing pool until a health check passes.",
    )
    breaker_cooldown: float = _setting(
        60.0,
        "ARENA_BREAKER_COOLDOWN",
        "Seconds an offline model waits before one trial battle when no health check has brought it back.",
    )

    default_language: str = _setting(
        "en",
        "ARENA_DEFAULT_LANGUAGE",
        "Interface language when the visitor's browser asks for none we have: en, zh-TW, zh-CN, ja or pl "
        "(visitors can switch on the page).",
    )
    title: str = _setting("", "ARENA_TITLE", "Page title; empty: 'LLM Arena' in the visitor's language.")
    description: str = _setting(
        "", "ARENA_DESCRIPTION", "Text (Markdown) under the title; empty: a short translated explanation."
    )
    terms: str = _setting(
        "",
        "ARENA_TERMS",
        "Terms (Markdown) a visitor accepts once per session before the first battle; empty: a translated "
        "notice that prompts and votes are stored and may be published for research.",
    )
    journal_dir: str = _setting(
        "",
        "ARENA_JOURNAL_DIR",
        "Local folder for the append-only journal of battles and votes (journal/*.jsonl) and the snapshot "
        "staged for pushing. Empty: next to the SQLite file (<name>-sync/), or db/sync-<hash of the database URL>/ "
        "for PostgreSQL (one folder per database).",
    )
    dataset_repo: str = _setting(
        "",
        "ARENA_DATASET_REPO",
        "Hugging Face dataset repo (owner/name) that receives the journal and SQLite snapshots, and that the "
        "arena restores from at start-up (a Space's disk is wiped on restart). Needs HF_TOKEN (write access).",
    )
    dataset_path: str = _setting(
        "", "ARENA_DATASET_PATH", "Folder inside ARENA_DATASET_REPO for the arena's files (empty: the repo root)."
    )
    sync_folder: str = _setting(
        "",
        "ARENA_SYNC_FOLDER",
        "A folder (e.g. a mounted network disk) used like ARENA_DATASET_REPO: pushed to, restored from. "
        "Set one of the two, not both.",
    )
    sync_minutes: float = _setting(
        5.0, "ARENA_SYNC_MINUTES", "Minutes between pushes of the journal (and snapshot) to the sync target."
    )
    snapshot_minutes: float = _setting(
        60.0,
        "ARENA_SNAPSHOT_MINUTES",
        "Minutes between SQLite snapshots included in a push (0: with every push); one is always pushed at "
        "shutdown. Votes between snapshots are in the journal.",
    )
    # -- evaluation campaigns (docs/campaigns.md) --
    campaigns: str = _setting(
        "",
        "ARENA_CAMPAIGNS",
        "Campaign bundles (folders with a campaign.yaml), separated by commas, loaded at start-up (loading again "
        "adds nothing); campaigns already in the database are judged too. Demo mode adds the demo campaign.",
    )
    campaign_choice: str = _setting(
        "top",
        "ARENA_CAMPAIGN_CHOICE",
        "How the next campaign comparison is chosen: 'top' (favour what is uncertain about the best candidates) "
        "or 'uniform'.",
    )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``environ`` (e.g. ``os.environ``), then apply non-None ``overrides``.

        Raises
        ------
        ConfigError
            When a value cannot be read as its setting's type, or is out of range.
        """
        environ = environ or {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            env = f.metadata.get("env")
            if f.name in overrides and overrides[f.name] is not None:
                values[f.name] = _coerce(f, overrides[f.name], f"--{f.name.replace('_', '-')}")
            elif env and env in environ:
                values[f.name] = _coerce(f, environ[env], env)
        settings = cls(**values)
        settings._validate()
        return settings

    def _validate(self) -> None:
        if self.pairing not in get_args(PairingStrategy):
            raise ConfigError(f"ARENA_PAIRING must be 'uniform', 'weighted' or 'active', not {self.pairing!r}.")
        if not 0 <= self.pairing_floor <= 1:
            raise ConfigError("ARENA_PAIRING_FLOOR must be between 0 and 1 (a share of the draws).")
        if self.pairing_warmup_votes < 0:
            raise ConfigError("ARENA_PAIRING_WARMUP_VOTES must be 0 or more.")
        if self.campaign_choice not in ("top", "uniform"):
            raise ConfigError(f"ARENA_CAMPAIGN_CHOICE must be 'top' or 'uniform', not {self.campaign_choice!r}.")
        if self.tie_policy not in get_args(TiePolicy):
            raise ConfigError(f"ARENA_TIE_POLICY must be 'half' or 'exclude', not {self.tie_policy!r}.")
        if self.bothbad_policy not in ("", *get_args(TiePolicy)):
            raise ConfigError(
                "ARENA_BOTHBAD_POLICY must be 'half', 'exclude' or empty (as ARENA_TIE_POLICY), "
                f"not {self.bothbad_policy!r}."
            )
        if self.interval not in get_args(IntervalMethod):
            raise ConfigError(f"ARENA_INTERVAL must be 'bootstrap' or 'sandwich', not {self.interval!r}.")
        if self.bootstrap_rounds < 0 or self.min_votes < 0:
            raise ConfigError("ARENA_BOOTSTRAP_ROUNDS and ARENA_MIN_VOTES must be 0 or more.")
        if self.interval == "bootstrap" and self.bootstrap_rounds == 0:
            raise ConfigError("ARENA_BOOTSTRAP_ROUNDS=0 skips the bootstrap; set ARENA_INTERVAL=sandwich with it.")
        for name in ("connect_timeout", "first_token_timeout", "read_timeout", "total_timeout", "stream_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be a positive number of seconds.")
        limits = (
            "trusted_proxy_hops",
            "battles_per_minute",
            "votes_per_hour",
            "min_read_seconds",
            "replay_window",
            "health_interval",
            "update_rate",
            "read_pace",
        )
        for name in limits:
            if getattr(self, name) < 0:
                raise ConfigError(f"{_env_name(name)} must be 0 or more.")
        if self.breaker_failures < 1 or self.breaker_cooldown <= 0:
            raise ConfigError("ARENA_BREAKER_FAILURES must be at least 1 and ARENA_BREAKER_COOLDOWN positive.")
        if self.session_ttl < 0:
            raise ConfigError("ARENA_SESSION_TTL must be 0 or more seconds.")
        if self.max_regenerations < 0:
            raise ConfigError("ARENA_MAX_REGENERATIONS must be 0 or more.")
        for name in ("concurrency_limit", "queue_size", "max_prompt_chars", "session_capacity", "max_turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_env_name(name)} must be at least 1.")
        needed = 12 * max(self.max_prompt_chars, self.max_reason_chars) + 4096
        if self.max_request_bytes < needed:
            # 12 bytes: a character outside the BMP written as two JSON \u escapes, the longest a client may send.
            raise ConfigError(
                f"ARENA_MAX_REQUEST_BYTES ({self.max_request_bytes}) cannot hold the longest prompt or reason; "
                f"raise it to at least {needed} or lower ARENA_MAX_PROMPT_CHARS / ARENA_MAX_REASON_CHARS."
            )
        if self.default_language not in LANGUAGES:
            raise ConfigError(
                f"ARENA_DEFAULT_LANGUAGE must be one of {', '.join(LANGUAGES)}, not {self.default_language!r}."
            )
        if self.dataset_repo and self.sync_folder:
            raise ConfigError("Set ARENA_DATASET_REPO or ARENA_SYNC_FOLDER, not both (one sync target).")
        if self.dataset_repo and (self.dataset_repo.count("/") != 1 or " " in self.dataset_repo):
            raise ConfigError(f"ARENA_DATASET_REPO must look like owner/name, not {self.dataset_repo!r}.")
        if self.sync_minutes <= 0 or self.snapshot_minutes < 0:
            raise ConfigError("ARENA_SYNC_MINUTES must be positive and ARENA_SNAPSHOT_MINUTES 0 or more.")
        if not 0 <= self.port <= 65535:
            raise ConfigError("The port must be between 0 and 65535.")


def _env_name(name: str) -> str:
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return str(f.metadata.get("env") or name)
    return name


def _coerce(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    kind: type[Any] = type(f.default)
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    text = str(raw).strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        hint = " (remove any quotes or units)" if text[:1] in "'\"" or text[-1:].isalpha() else ""
        raise ConfigError(
            f"{source}={text!r} is not a valid {kind.__name__}{hint}; default is {f.default!r}."
        ) from None
    return text


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Settings)
"""The settings table in declaration order (name, default, metadata env/help/flag)."""
