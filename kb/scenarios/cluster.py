"""Throwaway PostgreSQL clusters for scenarios, the sandbox and tests.

As root, initdb and postgres refuse to run, so the data directory belongs to `postgres` and the
binaries run as `postgres`. Clusters are made for speed: initdb runs once per process for each set
of binaries (and what every cluster of a kind needs, such as the scenarios' roles, is made in it once),
every data directory is a copy of that template, in memory where there is a tmpfs; the postmaster is
started directly and watched through postmaster.pid (pg_ctl -w only looks every 100 ms), and stopped
with an immediate shutdown unless asked otherwise.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from kb.errors import KbError


class ClusterError(KbError):
    """A throwaway cluster could not be created or started."""


# Every cluster and pgbouncer this process started and has not destroyed yet: stopped at exit, so a
# sandbox or a test run that ends early (an exception, Ctrl-C, SIGTERM turned into an exit) leaves none.
_LIVE: dict[int, "Cluster | PgBouncer"] = {}


def destroy_all() -> None:
    """Stop and remove every cluster and pgbouncer this process started and still holds."""
    for server in list(_LIVE.values()):
        server.destroy()


atexit.register(destroy_all)


def find_bindir(prefer: str | None = None) -> Path:
    """PostgreSQL server binaries: $KB_PG_BINDIR, Debian's newest, or pg_config --bindir."""
    for cand in [prefer, os.environ.get("KB_PG_BINDIR")]:
        if cand and (Path(cand) / "initdb").exists():
            return Path(cand)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    raise ClusterError("no PostgreSQL server binaries found (apt-get install postgresql, or set KB_PG_BINDIR)")


def free_port() -> int:
    """A port the kernel says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def _owner_popen_args() -> dict:
    """Popen arguments that run a process as `postgres` when running as root, without a runuser in between
    (so the child's pid is the server's own, to signal and to reap)."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    env = {**os.environ, "HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name}
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env}


def chown_to_postgres(path: Path) -> None:
    """Give `path` to the postgres user when running as root."""
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def scratch_dir() -> str | None:
    """Where throwaway clusters live: $KB_CLUSTER_DIR, else /dev/shm when it is writable (copying a 40 MB
    template takes 0.1 s in memory and 0.6-1.5 s on this VM's disk), else the system's temporary folder."""
    chosen = os.environ.get("KB_CLUSTER_DIR")
    if chosen:
        return chosen
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


INITDB_OPTIONS = ["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]

# One initdb per set of binaries and initdb options in a process: each cluster starts from a copy of
# its template, which takes a fraction of initdb's time.
_TEMPLATES: dict[tuple, Path] = {}
_TEMPLATES_LOCK = threading.Lock()


def _remove_templates() -> None:
    for data in _TEMPLATES.values():
        shutil.rmtree(data.parent, ignore_errors=True)
    _TEMPLATES.clear()


atexit.register(_remove_templates)


def initdb(bindir: Path, data: Path, options: list[str]) -> None:
    """Run initdb (as `postgres`) into `data`, whose parent `postgres` must own."""
    res = subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), *options]), capture_output=True, text=True)
    if res.returncode != 0:
        raise ClusterError(f"initdb failed: {res.stderr.strip()[-500:]}")


def template(bindir: Path, options: list[str], prepare: Callable[["Cluster"], None] | None = None) -> Path:
    """A data directory made by initdb with `options` once per process for the binaries in `bindir`;
    `prepare` is then run on it once (started, prepared, stopped cleanly), so every copy has what it made."""
    key = (str(Path(bindir).resolve()), tuple(options), prepare and f"{prepare.__module__}.{prepare.__qualname__}")
    with _TEMPLATES_LOCK:
        if key not in _TEMPLATES:
            base = Path(tempfile.mkdtemp(prefix="kb-pgtemplate-", dir=scratch_dir()))
            os.chmod(base, 0o755)
            chown_to_postgres(base)
            try:
                initdb(Path(bindir), base / "data", options)
                if prepare is not None:
                    made = Cluster(base, bindir=bindir).start()
                    try:
                        prepare(made)
                    finally:
                        made.stop("fast")  # a shutdown checkpoint: copies start without recovery
                        _LIVE.pop(id(made), None)
            except BaseException:
                shutil.rmtree(base, ignore_errors=True)
                raise
            _TEMPLATES[key] = base / "data"
        return _TEMPLATES[key]


STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


class Cluster:
    """One throwaway cluster on 127.0.0.1 with its socket in its own folder.

    `initdb` adds options that only initdb can set (e.g. `["--wal-segsize=1"]`); runtime settings go in
    `settings`; `prepare` makes what every cluster of its kind needs in the template (see `template`).
    """

    def __init__(self, base: Path | None = None, settings: dict | None = None, bindir: Path | None = None,
                 initdb: list[str] | None = None, prepare: Callable[["Cluster"], None] | None = None):
        self.base = Path(base or tempfile.mkdtemp(prefix="kb-pg-", dir=scratch_dir()))
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        chown_to_postgres(self.base)
        self.data = self.base / "data"
        self.log = self.base / "log"
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.settings = {"max_connections": 20, **(settings or {})}
        self.initdb_options = INITDB_OPTIONS + list(initdb or [])
        self.prepare = prepare
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    def dsn(self, user: str = "postgres", dbname: str = "postgres", **extra) -> str:
        """A libpq DSN for this cluster."""
        parts = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": dbname, **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        """Create the data directory: a copy of this process's initdb template for these binaries."""
        src = template(self.bindir, self.initdb_options, self.prepare)
        res = subprocess.run(_as_owner(["cp", "-a", str(src), str(self.data)]),
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise ClusterError(f"copying the initdb template failed: {res.stderr.strip()[-500:]}")

    def start(self, attempts: int = 5, timeout: float = 30.0) -> "Cluster":
        """A data directory when needed, then start on a free port (retrying when the port was taken meanwhile)."""
        _LIVE[id(self)] = self
        if not (self.data / "PG_VERSION").exists():
            self.init()
        last = ""
        for _ in range(attempts):
            port = self.port or free_port()
            opts = ["-p", str(port), "-k", str(self.base), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                    "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "logging_collector=off"]
            for k, v in self.settings.items():
                opts += ["-c", f"{k}={v}"]
            offset = self.log.stat().st_size if self.log.exists() else 0
            with open(self.log, "ab") as log:
                self._proc = subprocess.Popen([str(self.bindir / "postgres"), "-D", str(self.data), *opts],
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, **_owner_popen_args())
            if self._wait_ready(timeout):
                self.port = port
                return self
            self._reap()
            with open(self.log, "rb") as log:
                log.seek(offset)
                last = log.read().decode(errors="replace")[-800:]
            if "already in use" not in last:
                break
            self.port = None
        raise ClusterError(f"postgres did not start: {last.strip()}")

    def _wait_ready(self, timeout: float) -> bool:
        """Poll postmaster.pid until this postmaster marks itself ready (the state pg_ctl -w waits for,
        seen within milliseconds instead of pg_ctl's 100 ms steps); False once it has exited."""
        pidfile = self.data / "postmaster.pid"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                return False
            try:
                lines = pidfile.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[0].strip() == str(self._proc.pid) and lines[7].strip() == "ready":
                return True
            time.sleep(0.005)
        return False

    def _reap(self, sig: int = signal.SIGQUIT, timeout: float = 60.0) -> None:
        """Signal the postmaster this object started (if it still runs) and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self, mode: str = "immediate") -> None:
        if self._proc is not None:
            self._reap(STOP_SIGNALS[mode])
        elif (self.data / "postmaster.pid").exists():  # a server this object did not start itself
            subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
                           capture_output=True, text=True)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would."""
        if self._proc is not None:
            self._reap(signal.SIGKILL)
            return
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        _LIVE.pop(id(self), None)

    def sql(self, statement: str, params=None, user: str = "postgres", dbname: str = "postgres"):
        """Run one statement as a superuser in autocommit; returns rows when there are any."""
        import psycopg

        with psycopg.connect(self.dsn(user, dbname), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.destroy()


def _running(pid: int) -> bool:
    """Whether `pid` is alive: not gone and not a zombie waiting for a parent (pgbouncer -d detaches)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class PgBouncer:
    """A real pgbouncer (Debian's package) in front of a cluster, with an admin console."""

    def __init__(self, cluster: Cluster, settings: dict | None = None, databases: dict | None = None,
                 users: list[str] | None = None):
        self.cluster = cluster
        self.dir = Path(tempfile.mkdtemp(prefix="kb-pgb-", dir=scratch_dir()))
        os.chmod(self.dir, 0o755)
        chown_to_postgres(self.dir)
        self.settings = {"pool_mode": "transaction", "default_pool_size": 2, "max_client_conn": 20,
                         "auth_type": "trust", "admin_users": "postgres", "stats_users": "monitor",
                         **(settings or {})}
        self.databases = databases or {"postgres": "dbname=postgres"}
        self.users = users or ["postgres", "monitor", "app"]
        self.port: int | None = None

    def start(self, attempts: int = 5) -> "PgBouncer":
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise ClusterError("pgbouncer is not installed (apt-get install pgbouncer)")
        _LIVE[id(self)] = self
        (self.dir / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in self.users))
        last = ""
        for _ in range(attempts):
            self.port = free_port()
            dbs = "".join(f"{name} = host=127.0.0.1 port={self.cluster.port} {spec}\n" for name, spec in self.databases.items())
            opts = {"listen_addr": "127.0.0.1", "listen_port": self.port, "auth_file": self.dir / "userlist.txt",
                    "unix_socket_dir": self.dir, "logfile": self.dir / "log", "pidfile": self.dir / "pid", **self.settings}
            ini = "[databases]\n" + dbs + "[pgbouncer]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items())
            (self.dir / "pgbouncer.ini").write_text(ini)
            for f in self.dir.iterdir():
                chown_to_postgres(f)
            res = subprocess.run(_as_owner([binary, "-d", str(self.dir / "pgbouncer.ini")]), capture_output=True, text=True)
            if res.returncode == 0 and self._wait_ready():
                return self
            last = (self.dir / "log").read_text(errors="replace")[-600:] if (self.dir / "log").exists() else res.stderr
            if "in use" not in last:
                break
        raise ClusterError(f"pgbouncer did not start: {last.strip()}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def admin_dsn(self, user: str = "postgres") -> str:
        return self.dsn(user, "pgbouncer")

    def stop(self, timeout: float = 5.0) -> None:
        pidfile = self.dir / "pid"
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
            else:
                end = time.monotonic() + timeout
                while _running(pid) and time.monotonic() < end:
                    time.sleep(0.005)
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.pop(id(self), None)

    destroy = stop
