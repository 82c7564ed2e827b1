"""Start `kb serve` as a real subprocess (gunicorn) with its own config, for browser and HTTP tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kb.scenarios.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent
RUNNING: dict[int, "Server"] = {}  # servers not stopped yet; the session's end stops any a test left behind


def stop_all() -> None:
    """Stop every server a test started and did not stop."""
    for server in list(RUNNING.values()):
        server.stop()


class Server:
    """A running `kb serve`; `token(name, role)` creates identities through the CLI."""

    def __init__(self, workdir: Path, toml: str = "", env: dict | None = None, workers: int = 1):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "kb.toml").write_text(toml)
        self.port = free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "PG")) and k != "DATABASE_URL"}
        self.env = {**base_env, "KB_CONFIG": str(workdir / "kb.toml"), "KB_INSTANCE_DIR": str(workdir / "instance"),
                    "KB_CONTENT_DIR": str(ROOT / "content"), "KB_RUNBOOKS_DIR": str(ROOT / "runbooks"),
                    "KB_PORT": str(self.port), "KB_TARGET_IDLE_SECONDS": "0", **(env or {})}
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def kb(self, *args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "kb", *args], env=self.env, cwd=self.workdir,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def token(self, name: str, role: str) -> str:
        return self.kb("token", "create", name, "--role", role)

    def start(self) -> "Server":
        if getattr(self, "log", None):
            self.log.close()
        self.log = open(self.workdir / "server.log", "a")
        RUNNING[id(self)] = self
        self.proc = subprocess.Popen([sys.executable, "-m", "kb", "serve", "--workers", str(self.workers)],
                                     env=self.env, cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                if self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError((self.workdir / "server.log").read_text()) from None
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("kb serve did not answer within 60 s")

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers), as a crash would."""
        if self.proc and self.proc.poll() is None:
            subprocess.run(["pkill", "-9", "-P", str(self.proc.pid)], check=False)
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        RUNNING.pop(id(self), None)

    def _close_log(self) -> None:
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
