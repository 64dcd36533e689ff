"""Deployment files agree with the code: Space front matter, Dockerfile, docker-compose.yml.

There is no Docker engine where the tests run: the compose file is checked by parsing it, not by
running it, and the image is not built here.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def front_matter() -> dict[str, object]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))  # type: ignore[no-any-return]


def test_space_front_matter_matches_requirements_and_installed_gradio() -> None:
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["python_version"] == "3.12"  # a string: unquoted 3.10 would read as 3.1
    assert '"3.12"' in (ROOT / "README.md").read_text(encoding="utf-8").split("---")[1]
    sdk = str(meta["sdk_version"])
    requirement = re.search(r"^gradio>=([\d.]+),<(\d+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert requirement, "requirements.txt pins gradio as gradio>=X,<Y"
    low, high = requirement.groups()

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    assert parts(low) <= parts(sdk) < (int(high),), (sdk, low, high)
    assert version("gradio") == sdk, "the tested gradio must be the Space's"


def test_dockerfile_is_small_non_root_and_listens_everywhere() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.12-slim$", text, re.M)
    assert "--uid 1000" in text and re.search(r"^USER arena$", text, re.M)
    assert re.search(r"^EXPOSE 7860$", text, re.M)
    assert "GRADIO_SERVER_NAME=0.0.0.0" in text
    assert re.search(r"^HEALTHCHECK .*\n.*7860/config", text, re.M)
    assert 'VOLUME ["/data"]' in text and "sqlite:////data/" in text
    assert re.search(r'^CMD \["python", "app.py"\]$', text, re.M)  # exec form: SIGTERM reaches the app


def test_compose_wires_arena_postgres_and_two_tgi_models_on_gpus() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"arena", "postgres", "breeze", "bielik"}
    arena = services["arena"]
    env = arena["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["DATABASE_URL"]
    roster = (ROOT / "models.yaml").read_text(encoding="utf-8")
    for name, var in (("breeze", "BREEZE_URL"), ("bielik", "BIELIK_URL")):
        assert env[var] == f"http://{name}:80"
        assert f"${{{var}:-" in roster, f"models.yaml reads {var}"
        tgi = services[name]
        assert tgi["image"].startswith("ghcr.io/huggingface/text-generation-inference")
        assert "--model-id" in tgi["command"] and "/health" in " ".join(tgi["healthcheck"]["test"])
        (device,) = tgi["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    gpus = [
        services[n]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for n in ("breeze", "bielik")
    ]
    assert gpus[0] != gpus[1], "each model gets its own GPU"
    assert "Breeze-7B-Instruct" in services["breeze"]["command"] and "Bielik-7B" in services["bielik"]["command"]
    assert arena["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "7860/config" in " ".join(arena["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ARENA_CLIENT_SALT" in env
    postgres_env = services["postgres"]["environment"]
    assert f"{postgres_env['POSTGRES_USER']}:" in env["DATABASE_URL"]
    assert env["DATABASE_URL"].endswith("/" + postgres_env["POSTGRES_DB"])
