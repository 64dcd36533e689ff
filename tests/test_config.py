"""Settings: loaded from a mapping, overridden by flags, validated with advice, all documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from arena.config import SETTINGS, Settings
from arena.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_without_environment() -> None:
    s = Settings.load({})
    assert s.config == "models.yaml" and s.port == 7860 and s.demo is False


def test_environment_then_flags() -> None:
    env = {"GRADIO_SERVER_PORT": "9000", "ARENA_DEMO": "yes", "DATABASE_URL": "sqlite:///x.db"}
    s = Settings.load(env, port=9100, db=None)
    assert s.port == 9100  # a flag wins over the environment
    assert s.demo is True and s.db == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"GRADIO_SERVER_PORT": "'7860'"}, "remove any quotes"),
        ({"ARENA_READ_TIMEOUT": "30s"}, "remove any quotes or units"),
        ({"ARENA_TIE_POLICY": "sometimes"}, "'half' or 'exclude'"),
        ({"ARENA_BOTHBAD_POLICY": "never"}, "ARENA_BOTHBAD_POLICY must be 'half', 'exclude' or empty"),
        ({"ARENA_TOTAL_TIMEOUT": "0"}, "positive"),
        ({"ARENA_DEMO": "maybe"}, "ARENA_DEMO"),
    ],
)
def test_bad_values_say_what_to_do(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.load(env)


def test_every_setting_has_help_and_is_documented() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for f in SETTINGS:
        assert f.metadata["help"], f.name
        assert f.metadata["env"], f.name
        assert f"`{f.metadata['env']}`" in docs, f"{f.metadata['env']} is missing from docs/configuration.md"
        if f.metadata.get("flag"):
            assert f"`{f.metadata['flag']}`" in docs, f"{f.metadata['flag']} is missing from docs/configuration.md"
