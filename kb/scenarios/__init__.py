"""Reproductions: put a throwaway cluster into the failure a runbook diagnoses, for real.

Used by the tests and by `kb sandbox <scenario>` so a person can practise on the same states. Each
module of this package registers the scenarios of one runbook with the @scenario decorator;
`cluster` starts and stops the throwaway PostgreSQL servers and pgbouncers they run on.

May import `kb.errors` only: scenarios act on clusters, not on kb's runbooks or service.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from kb.scenarios.cluster import Cluster


class Holder:
    """Sessions a scenario keeps open to hold the cluster in its state."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.conns: list[psycopg.Connection] = []
        self.extra: list[Callable[[], None]] = []

    def connect(self, user="app", dbname="postgres", app="", autocommit=True, socket=False) -> psycopg.Connection:
        """A session as `user`; `socket` connects through the Unix socket (client address "local"), so
        one application can appear to come from a second host."""
        extra = {"host": str(self.cluster.base)} if socket else {}
        conn = psycopg.connect(self.cluster.dsn(user, dbname, **extra), application_name=app, autocommit=autocommit,
                               connect_timeout=5)
        self.conns.append(conn)
        return conn

    def hold(self, n: int, **kw) -> list[psycopg.Connection]:
        return [self.connect(**kw) for _ in range(n)]

    def close(self) -> None:
        for fn in self.extra:
            fn()
        for c in self.conns:
            try:
                c.close()
            except psycopg.Error:
                pass
        self.conns = []


class ConnectionWatch:
    """Samples pg_stat_activity in a thread while open; `peak` is the most kb sessions seen at once."""

    def __init__(self, dsn: str, app_like: str = "kb%", every: float = 0.003):
        self.dsn, self.app_like, self.every = dsn, app_like, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                                 (self.app_like,)).fetchone()[0]
                self.peak = max(self.peak, n)
                time.sleep(self.every)

    def __enter__(self) -> "ConnectionWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Scenario:
    """A named reproduction for one runbook, with the path its test expects the run to take."""

    name: str
    runbook: str
    description: str
    setup: Callable[[Cluster, Holder], None]
    expect_path: list[str] = field(default_factory=list)  # step ids in order, conclusion last
    settings: dict = field(default_factory=dict)
    target_user: str = "monitor"
    target_db: str = "postgres"
    reserved: bool = True
    params: dict = field(default_factory=dict)  # parameters the scenario's run uses
    answers: dict = field(default_factory=dict)  # question step id -> answer value
    confirm: dict = field(default_factory=dict)  # action step id -> True/False
    verify: Callable[[Cluster, Holder], None] | None = None  # asserts the effect on the database
    target_fn: Callable[[Cluster, Holder], dict] | None = None  # e.g. a pgbouncer admin console
    expect_verdict: str | None = None  # text the conclusion's verdict must contain
    expect_links: list[str] = field(default_factory=list)  # URLs the conclusion's fix links must include
    # the same state diagnosed as other roles (`postgres` the superuser, `monitor` with pg_monitor,
    # `plain` with neither), every action declined: role -> the path that run takes
    roles: dict[str, list[str]] = field(default_factory=dict)
    # where an older major shows a role less: {N: {role: path}} is the path on majors below N
    roles_before: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    min_version: int | None = None  # the oldest server major the state can be reproduced on

    def role_path(self, role: str, major: int) -> list[str]:
        """The path the run as `role` takes on PostgreSQL `major`."""
        for below, paths in sorted(self.roles_before.items()):
            if major < below and role in paths:
                return paths[role]
        return self.roles[role]

    def target(self, cluster: Cluster, holder: "Holder | None" = None, user: str | None = None) -> dict:
        """The [targets.NAME] table pointing kb at this cluster (or what the scenario put in front)."""
        if self.target_fn is not None:
            return self.target_fn(cluster, holder)
        t = {"dsn": cluster.dsn(user or self.target_user, self.target_db), "description": f"sandbox: {self.name}"}
        if self.reserved:
            t["reserved_dsn"] = cluster.dsn("postgres", self.target_db)
        return t


def base_roles(cluster: Cluster) -> None:
    """Roles every scenario has: `monitor` (what kb connects as), `plain` (a role kb might be given,
    without pg_monitor) and `app` (the application)."""
    cluster.sql("CREATE ROLE monitor LOGIN IN ROLE pg_monitor, pg_signal_backend")
    cluster.sql("CREATE ROLE plain LOGIN")
    cluster.sql("CREATE ROLE app LOGIN")
    cluster.sql("CREATE DATABASE shop OWNER app")


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, runbook: str, description: str, **kw):
    def deco(fn):
        SCENARIOS[name] = Scenario(name, runbook, description, fn, **kw)
        return fn
    return deco


def _load_all() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def start(name: str, base=None, bindir=None) -> tuple[Cluster, Holder]:
    """Start a cluster in the scenario's state; the caller closes the holder and destroys the cluster."""
    sc = SCENARIOS[name]
    cluster = Cluster(base, settings=sc.settings, bindir=bindir, prepare=base_roles)
    holder = Holder(cluster)
    try:
        cluster.start()  # a copy of a template that has the base roles already
        sc.setup(cluster, holder)
    except BaseException:
        holder.close()
        cluster.destroy()
        raise
    return cluster, holder


_load_all()
