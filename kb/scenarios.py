"""Reproductions: put a throwaway cluster into the failure a runbook diagnoses, for real.

Used by the tests and by `kb sandbox <scenario>` so a person can practise on the same states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from kb.pgcluster import Cluster


class Holder:
    """Sessions a scenario keeps open to hold the cluster in its state."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.conns: list[psycopg.Connection] = []
        self.extra: list[Callable[[], None]] = []

    def connect(self, user="app", dbname="postgres", app="", autocommit=True) -> psycopg.Connection:
        conn = psycopg.connect(self.cluster.dsn(user, dbname), application_name=app, autocommit=autocommit,
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


@dataclass
class Scenario:
    """A named reproduction for one runbook."""

    name: str
    runbook: str
    description: str
    setup: Callable[[Cluster, Holder], None]
    settings: dict = field(default_factory=dict)
    target_user: str = "monitor"
    target_db: str = "postgres"
    reserved: bool = True
    params: dict = field(default_factory=dict)  # parameters the scenario's test runs with

    def target(self, cluster: Cluster) -> dict:
        """The [targets.NAME] table pointing kb at this cluster."""
        t = {"dsn": cluster.dsn(self.target_user, self.target_db), "description": f"sandbox: {self.name}"}
        if self.reserved:
            t["reserved_dsn"] = cluster.dsn("postgres", self.target_db)
        return t


def base_roles(cluster: Cluster) -> None:
    """Roles every scenario has: `monitor` (what kb connects as) and `app` (the application)."""
    cluster.sql("CREATE ROLE monitor LOGIN IN ROLE pg_monitor, pg_signal_backend")
    cluster.sql("CREATE ROLE app LOGIN")
    cluster.sql("CREATE DATABASE shop OWNER app")


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, runbook: str, description: str, **kw):
    def deco(fn):
        SCENARIOS[name] = Scenario(name, runbook, description, fn, **kw)
        return fn
    return deco


CONN = {"max_connections": 10, "superuser_reserved_connections": 3}  # 7 usable slots


@scenario("healthy", "connection-exhaustion", "A quiet server: one application connection.", settings=CONN)
def _healthy(c: Cluster, h: Holder) -> None:
    h.connect(app="web")


@scenario("no-slots", "connection-exhaustion", "Every slot taken, superuser-reserved ones included.",
          settings=CONN)
def _no_slots(c: Cluster, h: Holder) -> None:
    h.hold(4, user="app", app="worker")
    h.hold(6, user="postgres", app="admin-script")


@scenario("reserved-only", "connection-exhaustion",
          "Only the superuser-reserved slots are left: the application holds all 7 usable ones.", settings=CONN)
def _reserved_only(c: Cluster, h: Holder) -> None:
    h.hold(7, user="app", app="worker")


@scenario("role-limit", "connection-exhaustion", "Role `app` has CONNECTION LIMIT 2 and uses both.",
          settings=CONN, target_user="app")
def _role_limit(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE app CONNECTION LIMIT 2")
    h.hold(2, user="app", app="worker")


@scenario("db-limit", "connection-exhaustion", "Database `shop` has CONNECTION LIMIT 2 and both are used.",
          settings=CONN, target_db="shop")
def _db_limit(c: Cluster, h: Holder) -> None:
    c.sql("ALTER DATABASE shop CONNECTION LIMIT 2")
    h.hold(2, user="app", dbname="shop", app="worker")


@scenario("many-idle", "connection-exhaustion", "Application `worker` keeps 6 idle connections of 7 usable.",
          settings=CONN)
def _many_idle(c: Cluster, h: Holder) -> None:
    h.hold(6, user="app", app="worker")


@scenario("idle-in-transaction", "connection-exhaustion",
          "Three sessions of `billing` sit idle in transaction (older than the 1 s threshold).",
          settings=CONN, params={"idle_seconds": 1})
def _idle_in_tx(c: Cluster, h: Holder) -> None:
    for _ in range(3):
        conn = h.connect(user="app", app="billing", autocommit=False)
        conn.execute("SELECT 1")
    time.sleep(1.2)


def start(name: str, base=None, bindir=None) -> tuple[Cluster, Holder]:
    """Start a cluster in the scenario's state; the caller closes the holder and destroys the cluster."""
    sc = SCENARIOS[name]
    cluster = Cluster(base, settings=sc.settings, bindir=bindir).start()
    base_roles(cluster)
    holder = Holder(cluster)
    try:
        sc.setup(cluster, holder)
    except BaseException:
        holder.close()
        cluster.destroy()
        raise
    return cluster, holder
