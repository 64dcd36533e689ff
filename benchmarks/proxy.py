"""The shipped nginx configuration (docs/deploy/nginx.conf), run by a test or benchmark on a free port.

:func:`render` rewrites only what differs between a test and a real host: the upstream's process
addresses, the listening address and the access log's path. Everything else (sticky cookie, SSE
settings, forwarded headers, body size) is the file as shipped, so the tests check what operators
install. :class:`Nginx` runs it in the foreground under a private prefix (no root, no system files).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "docs" / "deploy" / "nginx.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+127\.0\.0\.1:\d+(\s[^;]*)?;\n", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen\s+80;", re.MULTILINE)
ACCESS_LOG = re.compile(r"access_log\s+\S+\s+arena_route;")


def render(text: str, upstreams: Sequence[str], port: int, access_log: Path) -> str:
    """``text`` (the shipped file) with ``upstreams`` (``host:port``) as the processes, on 127.0.0.1:``port``."""
    servers = list(UPSTREAM_SERVER.finditer(text))
    if not servers or LISTEN.search(text) is None or ACCESS_LOG.search(text) is None:
        raise ValueError(f"{CONF} no longer has the upstream servers, 'listen 80;' or the access_log this expects")
    indent, options = servers[0].group(1), servers[0].group(2) or ""
    block = "".join(f"{indent}server {address}{options};\n" for address in upstreams)
    text = text[: servers[0].start()] + block + text[servers[-1].end() :]
    text = LISTEN.sub(lambda m: f"{m.group(1)}listen 127.0.0.1:{port};", text)
    return ACCESS_LOG.sub(f"access_log {access_log} arena_route;", text)


def nginx_binary() -> str:
    """Path of nginx; raises with the install command when it is missing."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        raise RuntimeError("nginx is not installed: apt-get install -y nginx (Debian's package)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """nginx with the shipped config in front of ``upstreams``, on a free port, files under ``workdir``."""

    def __init__(self, upstreams: Sequence[str], workdir: Path, *, cpus: str = "", workers: int = 1) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        (workdir / "arena.conf").write_text(
            render(CONF.read_text(encoding="utf-8"), upstreams, self.port, self.access_log), encoding="utf-8"
        )
        temp = "".join(
            f"    {kind}_temp_path {workdir / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root, workers would switch to "nobody", which cannot write the private temp folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes {workers};\npid {workdir / 'nginx.pid'};\n"
            f"error_log {self.error_log} notice;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n{temp}    include {workdir / 'arena.conf'};\n}}\n",
            encoding="utf-8",
        )
        binary = nginx_binary()
        command = [binary, "-p", str(workdir), "-e", str(self.error_log), "-c", str(workdir / "nginx.conf")]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the rendered config:\n{check.stderr}")
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen([*pin, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.errors()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen on {self.port}:\n{self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def log_lines(self) -> list[str]:
        return self.access_log.read_text(errors="replace").splitlines() if self.access_log.exists() else []

    def cpu_seconds(self) -> float:
        """CPU seconds of the master and its workers (children) so far."""
        total = 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in [self.pid, *_children(self.pid)]:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
