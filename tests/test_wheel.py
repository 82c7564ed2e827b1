"""The wheel is a complete product: built with `pip wheel`, installed without `-e` into a new
virtualenv, `kb serve` started from an empty directory serves pages, static files and the API."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path

import pytest

from kb.scenarios.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str, data: bytes | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new virtualenv with only the wheel (and what pip resolves for it) installed."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    # setuptools builds in the checkout (build/, kb.egg-info): one build at a time across the test workers
    with open(Path(tempfile.gettempdir()) / "kb-test-wheel-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                       check=True, capture_output=True, timeout=300)
    wheels = list(dist.glob("kb-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheels[0])],
                   check=True, capture_output=True, timeout=600)
    return env_dir


def test_the_wheel_carries_content_runbooks_static_and_scenarios(installed):
    out = subprocess.run([str(installed / "bin" / "python"), "-c",
                          "import kb, kb.scenarios, pathlib; p = pathlib.Path(kb.__file__).parent; "
                          "print(p); print(len(list((p / 'shipped' / 'content').rglob('*.md')))); "
                          "print(len(list((p / 'shipped' / 'runbooks').glob('*'))));"
                          "print((p / 'shipped' / 'static' / 'kb.css').is_file())"],
                         capture_output=True, text=True, check=True, cwd="/", timeout=60).stdout.split()
    assert str(ROOT) not in out[0] and "site-packages" in out[0]
    assert int(out[1]) >= 100 and int(out[2]) >= 10 and out[3] == "True"
    listing = subprocess.run([str(installed / "bin" / "kb"), "sandbox", "--list"], capture_output=True,
                             text=True, check=True, cwd="/", timeout=60).stdout
    assert "connections-many-idle" in listing


def test_kb_serve_from_an_empty_directory_serves_the_knowledge_base(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KB_", "PG", "PYTHON", "VIRTUAL_ENV")) and k != "DATABASE_URL"}
    env.update(KB_PORT=str(port), HOME=str(tmp_path), PATH=f"{installed / 'bin'}:{env.get('PATH', '')}")
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen([str(installed / "bin" / "kb"), "serve"], cwd=empty, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    if _get(base + "/healthz")[0] == 200:
                        break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                    assert time.monotonic() < deadline, "kb serve did not answer within 90 s"
                    time.sleep(0.2)
            status, ctype, body = _get(base + "/errors/too-many-clients")
            assert status == 200 and ctype.startswith("text/html") and b"/static/kb.css" in body
            status, ctype, body = _get(base + "/static/kb.css")
            assert status == 200 and ctype.startswith("text/css") and len(body) > 1000
            status, ctype, body = _get(base + "/api/v1/search",
                                       json.dumps({"text": "FATAL:  sorry, too many clients already"}).encode())
            results = json.loads(body)["results"]
            assert status == 200 and results[0]["slug"] == "too-many-clients"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
