"""Throwaway PostgreSQL clusters (initdb + pg_ctl) for scenarios, the sandbox and tests.

As root, initdb and postgres refuse to run, so the data directory belongs to `postgres` and the
binaries run through `runuser -u postgres`.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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


def chown_to_postgres(path: Path) -> None:
    """Give `path` to the postgres user when running as root."""
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


class Cluster:
    """One throwaway cluster on 127.0.0.1 with its socket in its own folder."""

    def __init__(self, base: Path | None = None, settings: dict | None = None, bindir: Path | None = None):
        self.base = Path(base or tempfile.mkdtemp(prefix="kb-pg-"))
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        chown_to_postgres(self.base)
        self.data = self.base / "data"
        self.log = self.base / "log"
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.settings = {"max_connections": 20, **(settings or {})}
        self.port: int | None = None

    def dsn(self, user: str = "postgres", dbname: str = "postgres", **extra) -> str:
        """A libpq DSN for this cluster."""
        parts = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": dbname, **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        res = subprocess.run(_as_owner([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                                        "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"]),
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise ClusterError(f"initdb failed: {res.stderr.strip()[-500:]}")

    def start(self, attempts: int = 5) -> "Cluster":
        """initdb when needed, then start on a free port (retrying when the port was taken meanwhile)."""
        _LIVE[id(self)] = self
        if not (self.data / "PG_VERSION").exists():
            self.init()
        last = ""
        for _ in range(attempts):
            port = self.port or free_port()
            opts = [f"-p {port}", f"-k {self.base}", "-c listen_addresses=127.0.0.1", "-c fsync=off",
                    "-c synchronous_commit=off", "-c full_page_writes=off", "-c logging_collector=off"]
            opts += [f"-c {k}={v}" for k, v in self.settings.items()]
            res = subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", " ".join(opts),
                                            "-l", str(self.log), "-w", "-t", "30", "start"]),
                                 capture_output=True, text=True)
            if res.returncode == 0:
                self.port = port
                return self
            last = self.log.read_text(errors="replace")[-800:] if self.log.exists() else res.stderr
            if "already in use" not in last:
                break
            self.port = None
        raise ClusterError(f"pg_ctl start failed: {last.strip()}")

    def stop(self, mode: str = "immediate") -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
                           capture_output=True, text=True)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would."""
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


class PgBouncer:
    """A real pgbouncer (Debian's package) in front of a cluster, with an admin console."""

    def __init__(self, cluster: Cluster, settings: dict | None = None, databases: dict | None = None,
                 users: list[str] | None = None):
        self.cluster = cluster
        self.dir = Path(tempfile.mkdtemp(prefix="kb-pgb-"))
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

    def stop(self) -> None:
        pidfile = self.dir / "pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
            time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.pop(id(self), None)

    destroy = stop
