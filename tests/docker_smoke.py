"""Smoke test of the built image and the compose stack (run by ``bash .ci/docker-smoke``, not by pytest).

Needs a Docker engine (DOCKER_HOST) whose published ports this process can reach; .ci/docker-smoke
provides one and runs this inside its network namespace. Steps, each failing loudly:

image  : the container turns healthy (its HEALTHCHECK, on a non-default GRADIO_SERVER_PORT), runs as
         uid 1000, cannot write /app, holds no planted secret file, plays and stores a demo battle
         voted through gradio_client without touching the real database, keeps it across a
         restart, and stops on SIGTERM with exit code 0 within 10 s.
compose: docker-compose.yml with the GPU reservations removed and stand-ins for the TGI images (the
         arena's demo server, TGI's native protocol), the postgres image (Debian's PostgreSQL 15
         with password authentication) and the nginx image (Debian's nginx with the shipped
         docs/deploy/nginx-compose.conf), a POSTGRES_PASSWORD holding @, % and /: every service
         healthy (both arena replicas), a battle over the TGI protocol voted through the proxy
         (its requests served by one replica) stored in PostgreSQL, kept across down/up, and new
         visitors spread over both replicas.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
SECRET = "planted-secret-must-not-be-in-the-image"


class SmokeFailure(AssertionError):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)
    print(f"  ok: {what}", flush=True)


def docker(*args: str, check_rc: bool = True, timeout: float = 300) -> str:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check_rc and done.returncode != 0:
        raise SmokeFailure(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return done.stdout.strip()


def compose(project: str, files: list[Path], *args: str, env: dict[str, str], timeout: float = 600) -> str:
    cmd = ["docker-compose", "-p", project]
    for f in files:
        cmd += ["-f", str(f)]
    done = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        # docker-compose's own 60 s API timeout was hit stopping six containers at load average 20.
        env={"COMPOSE_HTTP_TIMEOUT": "300", **os.environ, **env},
        cwd=files[0].parent,
    )
    if done.returncode != 0:
        raise SmokeFailure(f"docker-compose {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip()


def wait_healthy(container: str, timeout: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container))
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return time.monotonic() - started
        if not state.get("Running"):
            raise SmokeFailure(f"{container} exited ({state.get('ExitCode')}):\n{docker('logs', container)[-3000:]}")
        time.sleep(1)
    raise SmokeFailure(f"{container} not healthy within {timeout} s:\n{docker('logs', '--tail', '40', container)}")


def vote_once(url: str, prompt: str) -> None:
    client = Client(url, verbose=False)
    try:
        if "/accept_terms" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]:
            client.predict(api_name="/accept_terms")
        client.predict(prompt, api_name="/send")
        client.predict(api_name="/vote_a")
    finally:
        client.close()


def wait_serving(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "/config", timeout=5).read()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise SmokeFailure(f"{url} not serving through the proxy within {timeout} s: {e}") from None
            time.sleep(1)


def proxy_routes(log: str) -> dict[str, dict[str, set[str]]]:
    """nginx's access log (docs/deploy/nginx-compose.conf's format): sticky cookie -> replicas that answered.

    Key "all": every request's replica; "join": queue joins' replicas.
    """
    routes: dict[str, dict[str, set[str]]] = {}
    for match in re.finditer(r'"(\w+) (\S+)" \d+ \d+ route=([0-9a-f]{32}) upstream=(.+?) time=', log):
        upstream = match.group(4).split(", ")[-1]
        entry = routes.setdefault(match.group(3), {"all": set()})
        entry["all"].add(upstream)
        if match.group(2).endswith("/queue/join"):
            entry.setdefault("join", set()).add(upstream)
    return routes


def sql_in_container(container: str, db: str, query: str) -> Any:
    code = f"import sqlite3; print(sqlite3.connect({db!r}).execute({query!r}).fetchone()[0])"
    return docker("exec", container, "python", "-c", code)


def smoke_image(image: str, port: int) -> dict[str, float]:
    name, volume = "arena-smoke", "arena-smoke-data"
    docker("rm", "-f", name, check_rc=False)
    docker("volume", "rm", "-f", volume, check_rc=False)
    figures: dict[str, float] = {}
    print(f"image {image}", flush=True)

    listing = docker(
        "run",
        "--rm",
        "--user",
        "root",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "find / -xdev -name '.env*'; find /app -name '*.pem' -o -name '*.key' -o -name '.netrc'",
    )
    check(listing == "", f"no .env file anywhere in the image, no key file under /app ({listing!r})")
    found = docker(
        "run", "--rm", "--user", "root", "--entrypoint", "grep", image, "-rl", SECRET, "/app", check_rc=False
    )
    check(found == "", "the planted secret's text is nowhere under /app")
    check(
        docker(
            "run",
            "--rm",
            "--user",
            "root",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "ls /app/db/*.sqlite3 2>/dev/null || true",
        )
        == "",
        "no local database copied in",
    )

    run = ["run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", "-v", f"{volume}:/data"]
    run += ["-e", "GRADIO_SERVER_PORT=8080", "-e", "ARENA_DEMO=1", "-e", "ARENA_CLIENT_SALT=smoke"]
    run += ["-e", "ARENA_MIN_READ_SECONDS=0", "--health-interval", "2s", "--health-start-period", "120s", image]
    docker(*run)
    figures["healthy after start (s)"] = wait_healthy(name)
    check(True, "healthy with its own HEALTHCHECK on GRADIO_SERVER_PORT=8080")
    check(docker("exec", name, "id", "-u") == "1000", "runs as uid 1000")
    write = subprocess.run([DOCKER, "exec", name, "sh", "-c", "touch /app/app.py || touch /app/x"], capture_output=True)
    check(write.returncode != 0, "the app user cannot write /app")

    url = f"http://127.0.0.1:{port}"
    vote_once(url, "Dzień dobry! Jak się masz?")
    check(
        sql_in_container(name, "/data/demo.sqlite3", "SELECT count(*) FROM votes") == "1",
        "a demo battle voted through gradio_client is stored in /data",
    )
    real = docker("exec", name, "sh", "-c", "ls /data/arena.sqlite3 2>/dev/null || true")
    check(real == "", "--demo left the real database (DATABASE_URL) alone")

    started = time.monotonic()
    docker("stop", "-t", "10", name)
    figures["docker stop (s)"] = time.monotonic() - started
    state = json.loads(docker("inspect", "--format", "{{json .State}}", name))
    check(
        state["ExitCode"] == 0 and figures["docker stop (s)"] < 10,
        f"SIGTERM: exit code {state['ExitCode']} after {figures['docker stop (s)']:.1f} s",
    )

    docker("start", name)
    figures["healthy after restart (s)"] = wait_healthy(name)
    check(
        sql_in_container(name, "/data/demo.sqlite3", "SELECT count(*) FROM votes") == "1",
        "the vote survived the restart",
    )
    vote_once(url, "こんにちは、元気ですか？")
    check(sql_in_container(name, "/data/demo.sqlite3", "SELECT count(*) FROM votes") == "2", "and a new one joins it")
    docker("rm", "-f", name)
    docker("volume", "rm", "-f", volume, check_rc=False)
    return figures


def stand_in_compose(image: str, base: str, work: Path) -> Path:
    """docker-compose.yml as shipped, minus GPU reservations, with stand-in images for TGI, postgres, nginx."""
    for name in ("postgres", "nginx"):
        docker(
            "build",
            "-q",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "-t",
            f"arena-ci/{name}-standin",
            str(ROOT / "tests/support/docker" / name),
            timeout=1800,
        )
    standin = (ROOT / "tests/support/docker/tgi_standin.py").read_text(encoding="utf-8")
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = spec["services"]
    arena = services["arena"]
    arena.pop("build")
    arena["image"] = image
    arena["environment"]["ARENA_MIN_READ_SECONDS"] = "0"
    services["postgres"]["image"] = "arena-ci/postgres-standin"
    proxy = services["proxy"]
    proxy["image"] = "arena-ci/nginx-standin"
    # The shipped mount, its source made absolute (this file is written elsewhere).
    proxy["volumes"] = [f"{ROOT / v.split(':', 1)[0]}:{v.split(':', 1)[1]}" for v in proxy["volumes"]]
    # Base images made by an older .ci/docker-env had / at mode 0700 (postgres runs as its own user);
    # a no-op on a base made now.
    services["postgres"]["entrypoint"] = ["sh", "-c", "chmod 755 / && exec /usr/local/bin/pg-standin"]
    for name in ("breeze", "bielik"):
        tgi = services[name]
        tgi.pop("deploy")  # no GPU here: "could not select device driver nvidia"
        # The arena image runs the stand-in script, given TGI's own command line; as root, for port 80.
        tgi["image"] = image
        tgi["user"] = "0"
        tgi["entrypoint"] = ["python", "-c", standin]
        tgi["healthcheck"]["test"] = [
            "CMD",
            "python",
            "-c",
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:80/health', timeout=4)",
        ]
        tgi["healthcheck"]["start_period"] = "60s"
        tgi["healthcheck"]["interval"] = "2s"
    path = work / "docker-compose.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def smoke_compose(image: str, base: str) -> dict[str, float]:
    print("compose stack", flush=True)
    figures: dict[str, float] = {}
    project = "arenasmoke"
    # A password a URL cannot hold as is; HF_TOKEN unset, as on a machine without one.
    env = {"ARENA_CLIENT_SALT": "smoke-salt", "POSTGRES_PASSWORD": "p@ss%20w/rd:x"}
    os.environ.pop("HF_TOKEN", None)
    with tempfile.TemporaryDirectory(prefix="arena-compose-") as tmp:
        files = [stand_in_compose(image, base, Path(tmp))]
        compose(project, files, "down", "-v", env=env)
        try:
            started = time.monotonic()
            compose(project, files, "up", "-d", env=env)
            replicas = [f"{project}_arena_{i}" for i in (1, 2)]
            for container in (f"{project}_postgres_1", f"{project}_breeze_1", f"{project}_bielik_1", *replicas):
                wait_healthy(container, timeout=300)
            wait_serving("http://127.0.0.1:7860", timeout=60)
            figures["stack healthy (s)"] = time.monotonic() - started
            check(True, "postgres, both TGI stand-ins and two arena replicas healthy; the proxy serves")
            for service in ("breeze", "bielik"):
                env_lines = docker("exec", f"{project}_{service}_1", "env").splitlines()
                check(not any(line.startswith("HF_TOKEN=") for line in env_lines), f"{service}: no empty HF_TOKEN")
            vote_once("http://127.0.0.1:7860", "Jak działa arena modeli?")
            for _ in range(16):  # new visitors' first page loads
                urllib.request.urlopen("http://127.0.0.1:7860/config", timeout=30).read()
            upstreams = proxy_routes(docker("logs", f"{project}_proxy_1"))
            joined = [ups for route, ups in upstreams.items() if "join" in ups]
            check(
                len(joined) == 1 and len(joined[0]["all"]) == 1,
                f"every request of the voting session went to one replica ({joined})",
            )
            spread = set().union(*(ups["all"] for ups in upstreams.values()))
            check(len(spread) == 2, f"new visitors reach both replicas ({sorted(spread)})")
            psql = ["exec", f"{project}_postgres_1", "psql", "-U", "arena", "-d", "arena", "-tAc"]
            row = docker(
                *psql, "SELECT b.model_a || ' ' || b.model_b FROM votes v JOIN battles b ON b.id = v.battle_id"
            )
            check(
                set(row.split()) == {"breeze-7b-instruct", "bielik-7b-instruct"},
                f"the battle between the two TGI stand-ins is stored in PostgreSQL ({row})",
            )
            asked = docker("logs", f"{project}_breeze_1")
            check("TGI stand-in" in asked, "the TGI stand-ins ran")
            compose(project, files, "down", env=env)
            compose(project, files, "up", "-d", env=env)
            for container in replicas:
                wait_healthy(container, timeout=300)
            check(docker(*psql, "SELECT count(*) FROM votes") == "1", "the vote is kept across down/up")
        except BaseException:
            # What the proxy and the replicas saw, before down removes them.
            for name in ("proxy_1", "arena_1", "arena_2"):
                done = subprocess.run(
                    [DOCKER, "logs", "--tail", "60", f"{project}_{name}"], capture_output=True, text=True, timeout=60
                )
                print(f"--- docker logs {project}_{name}\n{done.stdout}{done.stderr}", file=sys.stderr)
            raise
        finally:
            compose(project, files, "down", "-v", env=env, timeout=900)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--base", required=True, help="the local base image (for the postgres stand-in)")
    parser.add_argument("--port", type=int, default=7863)
    parser.add_argument("--skip-compose", action="store_true")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    try:
        figures.update(smoke_image(args.image, args.port))
        if not args.skip_compose:
            figures.update(smoke_compose(args.image, args.base))
    except (SmokeFailure, subprocess.TimeoutExpired) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    for what, seconds in figures.items():
        print(f"  {what:<28} {seconds:6.1f}")
    print("docker smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
