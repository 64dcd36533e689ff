"""models.yaml validation: errors name the file, the model and the field; ${VAR} expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from arena.errors import ConfigError
from arena.registry import load_registry, parse_registry

GOOD = {
    "models": [
        {"name": "alpha", "backend": "tgi", "url": "${ALPHA_URL:-http://127.0.0.1:8081}", "template": "chatml"},
        {"name": "beta", "backend": "openai", "url": "${BETA_URL}", "model": "org/beta", "api_key_env": "BETA_KEY"},
    ]
}


def test_expansion_and_defaults() -> None:
    reg = parse_registry(GOOD, environ={"BETA_URL": "https://beta.example/v1/"})
    assert reg["alpha"].url == "http://127.0.0.1:8081"
    assert reg["beta"].url == "https://beta.example/v1"
    assert [m.name for m in reg.enabled] == ["alpha", "beta"]
    assert reg["beta"].identity_names == ("beta", "org/beta")


def test_missing_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"model #2 \('beta'\).*BETA_URL is not set"):
        parse_registry(GOOD, environ={})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"temprature": 0.5}, r"model #1 \('alpha'\): field 'temprature': unknown key"),
        ({"backend": "grpc"}, r"field 'backend': unknown backend 'grpc'; the known kinds are tgi, openai$"),
        ({"url": "127.0.0.1:8081"}, r"field 'url'.*http://"),
        ({"params": {"top_p": 1.5}}, r"field 'params.top_p'"),
        ({"params": {"temprature": 1}}, r"field 'params.temprature': unknown key"),
        ({"weight": -1}, r"field 'weight'"),
        ({"kind": "instruct"}, r"field 'kind'"),
        ({"chat_template": "{{ x }}"}, r"only one of template, chat_template, tokenizer"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, object], fragment: str) -> None:
    data = {"models": [{**GOOD["models"][0], **change}, GOOD["models"][1]]}
    with pytest.raises(ConfigError, match=fragment):
        parse_registry(data, source="roster.yaml", environ={"BETA_URL": "http://b/v1"})


def test_openai_needs_model_id_and_names_are_unique() -> None:
    with pytest.raises(ConfigError, match="needs 'model'"):
        parse_registry({"models": [{"name": "x", "backend": "openai", "url": "http://x/v1"}]}, environ={})
    twice = {"models": [GOOD["models"][0], GOOD["models"][0]]}
    with pytest.raises(ConfigError, match="used twice"):
        parse_registry(twice, environ={})


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_registry(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_registry(bad, environ={})
    unknown_top = tmp_path / "top.yaml"
    unknown_top.write_text(yaml.safe_dump({**GOOD, "extra": 1}), encoding="utf-8")
    with pytest.raises(ConfigError, match=str(unknown_top).replace("\\", "\\\\") + ".*extra"):
        load_registry(unknown_top, environ={"BETA_URL": "http://b/v1"})


def test_shipped_rosters_load() -> None:
    root = Path(__file__).resolve().parents[1]
    reg = load_registry(root / "models.yaml", environ={})
    assert len(reg) >= 5
