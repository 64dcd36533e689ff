"""Deployment files agree with the code: Space front matter, Dockerfile, docker-compose.yml.

These read the files. The image is built and run, and the compose stack started (with stand-ins
for the GPU servers), by ``bash .ci/docker-smoke`` (tests/docker_smoke.py), which needs a Docker
engine and so is not part of this suite.
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
    requirement = re.search(r"^gradio>=([\d.]+),<([\d.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert requirement, "requirements.txt pins gradio as gradio>=X,<Y"
    low, high = requirement.groups()

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    assert parts(low) <= parts(sdk) < parts(high), (sdk, low, high)
    assert version("gradio") == sdk, "the tested gradio must be the Space's"


def test_dockerfile_is_small_non_root_and_listens_everywhere() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", text, re.M) and "FROM ${PYTHON_IMAGE}" in text
    assert "--uid 1000" in text and re.search(r"^USER arena$", text, re.M)
    assert re.search(r"^EXPOSE 7860$", text, re.M)
    assert "GRADIO_SERVER_NAME=0.0.0.0" in text
    # The probe asks the port the app listens on, not a fixed 7860.
    assert re.search(r"^HEALTHCHECK .*\n.*/config.*GRADIO_SERVER_PORT", text, re.M)
    assert "7860/config" not in text
    assert 'VOLUME ["/data"]' in text and "sqlite:////data/" in text
    assert re.search(r'^CMD \["python", "app.py"\]$', text, re.M)  # exec form: SIGTERM reaches the app


def test_compose_wires_arena_postgres_and_two_tgi_models_on_gpus() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"proxy", "arena", "postgres", "breeze", "bielik"}
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
    assert "healthcheck" not in arena  # the image's own, which follows GRADIO_SERVER_PORT
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ARENA_CLIENT_SALT" in env
    postgres_env = services["postgres"]["environment"]
    assert f"//{postgres_env['POSTGRES_USER']}@" in env["DATABASE_URL"]
    assert env["DATABASE_URL"].endswith("/" + postgres_env["POSTGRES_DB"])


def test_compose_runs_several_arena_processes_behind_the_shipped_sticky_proxy() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    arena, proxy = services["arena"], services["proxy"]
    assert arena["deploy"]["replicas"] >= 2
    assert "ports" not in arena, "replicas cannot share a published port: visitors come through the proxy"
    assert arena["environment"]["ARENA_TRUSTED_PROXY_HOPS"] == "1"  # the proxy is the one hop
    assert proxy["image"].startswith("nginx:") and proxy["ports"] == ["7860:80"]
    assert proxy["depends_on"]["arena"]["condition"] == "service_healthy"
    (mount,) = proxy["volumes"]
    source, target, mode = mount.split(":")
    assert target == "/etc/nginx/conf.d/default.conf" and mode == "ro"
    conf = (ROOT / source).read_text(encoding="utf-8")
    # The upstream is the compose service (every replica's address) on the image's port.
    assert "server arena:7860 " in conf and "listen 80;" in conf
    # A plain hash: nginx's consistent hash spreads one name's addresses round-robin (not sticky).
    assert "\n    hash $arena_route;\n" in conf and "hash $arena_route consistent" not in conf


def test_compose_keeps_the_password_out_of_the_url_and_never_sends_an_empty_token() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    env = services["arena"]["environment"]
    # A POSTGRES_PASSWORD with @ or % would break a URL; libpq reads PGPASSWORD instead.
    assert "POSTGRES_PASSWORD" not in env["DATABASE_URL"]
    assert env["PGPASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for name in ("breeze", "bielik"):
        tgi = services[name]
        # A bare name: passed only when set, never as an empty bearer token.
        assert tgi["environment"] == ["HF_TOKEN"]
        tag = tgi["image"].rsplit(":", 1)[1]
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin the TGI image, not {tag!r}"


def test_secrets_are_kept_out_of_git_and_out_of_the_image() -> None:
    for ignore in (".gitignore", ".dockerignore"):
        lines = (ROOT / ignore).read_text(encoding="utf-8").splitlines()
        assert ".env" in lines and ".env.*" in lines, ignore
