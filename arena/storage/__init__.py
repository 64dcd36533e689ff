"""The only code that imports SQLAlchemy."""

from arena.storage.store import (
    DB_DIR,
    DEFAULT_EXCLUDED_FLAGS,
    BattleExport,
    Store,
    as_stored,
    default_url,
    masked_url,
    sqlite_file,
)

__all__ = [
    "DB_DIR",
    "DEFAULT_EXCLUDED_FLAGS",
    "BattleExport",
    "Store",
    "as_stored",
    "default_url",
    "masked_url",
    "sqlite_file",
]
