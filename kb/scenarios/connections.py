"""Scenarios of the connection-exhaustion runbook: slots, reserved slots, limits, idle pools, zombies."""

from __future__ import annotations

import time

import psycopg

from kb.scenarios.cluster import Cluster
from kb.scenarios import Holder, scenario

CONN = {"max_connections": 10, "superuser_reserved_connections": 3}  # 7 usable slots
RB = "connection-exhaustion"


@scenario("connections-healthy", RB, "A quiet server: one application connection.", settings=CONN,
          expect_path=["slots", "limits", "zombies-check", "healthy"],
          roles={"postgres": ["slots", "limits", "zombies-check", "healthy"], "plain": ["slots", "cannot-see"]})
def _healthy(c: Cluster, h: Holder) -> None:
    h.connect(app="web")


@scenario("connections-young-idle-in-transaction", RB,
          "Six sessions of `billing` idle in a transaction, all younger than the 60 s threshold.",
          settings={"max_connections": 20, "superuser_reserved_connections": 3}, params={"idle_seconds": 60},
          expect_path=["slots", "limits", "zombies-check", "healthy"],
          expect_verdict="(6 are idle in a transaction for less, the longest ",
          roles={"postgres": ["slots", "limits", "zombies-check", "healthy"], "plain": ["slots", "cannot-see"]})
def _young_idle_in_tx(c: Cluster, h: Holder) -> None:
    for _ in range(6):
        h.connect(user="app", app="billing", autocommit=False).execute("SELECT 1")


@scenario("connections-no-slots", RB, "Every slot taken, the superuser-reserved ones included.", settings=CONN,
          expect_path=["slots", "slots-full", "completely-full"],
          roles={"postgres": ["slots", "slots-full", "completely-full"], "plain": ["slots", "slots-full", "completely-full"]})
@scenario("connections-no-slots-superuser", RB,
          "Every slot taken, the superuser-reserved ones included; kb connects as the superuser `postgres` "
          "and has no separate reserved connection.",
          settings=CONN, target_user="postgres", reserved=False,
          expect_path=["slots", "slots-full", "completely-full"],
          expect_verdict="every connection slot is taken, the superuser-reserved ones included",
          roles={"monitor": ["slots", "slots-full", "completely-full"], "plain": ["slots", "slots-full", "completely-full"]})
def _no_slots(c: Cluster, h: Holder) -> None:
    h.hold(4, user="app", app="worker")
    h.hold(6, user="postgres", app="admin-script")


@scenario("connections-reserved-only", RB,
          "Only the superuser-reserved slots are left: application `worker` holds all 7 usable ones.",
          settings=CONN, answers={"pool-question": "app-servers"},
          expect_path=["slots", "slots-reserved", "holders", "pool-question", "pool-math"],
          roles={"postgres": ["slots", "holders", "pool-question", "pool-math"], "plain": ["slots", "slots-reserved", "holders", "pool-question", "pool-math"]})
def _reserved_only(c: Cluster, h: Holder) -> None:
    h.hold(7, user="app", app="worker")


@scenario("connections-role-limit", RB, "Role `app` has CONNECTION LIMIT 2 and uses both; kb connects as `app`.",
          settings=CONN, target_user="app", expect_path=["slots", "limits-reserved", "limit-reached"])
@scenario("connections-role-limit-no-reserved", RB,
          "Role `app` has CONNECTION LIMIT 2 and uses both; kb connects as `app` and has no reserved connection.",
          settings=CONN, target_user="app", reserved=False,
          expect_path=["slots", "limits-reserved", "limit-unseen"])
def _role_limit(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE app CONNECTION LIMIT 2")
    h.hold(2, user="app", app="worker")


@scenario("connections-db-limit", RB, "Database `shop` has CONNECTION LIMIT 2 and both are used.",
          settings=CONN, target_db="shop", expect_path=["slots", "limits-reserved", "limit-reached"],
          roles={"postgres": ["slots", "limits", "limit-reached"], "plain": ["slots", "limits-reserved", "limit-reached"]})
def _db_limit(c: Cluster, h: Holder) -> None:
    c.sql("ALTER DATABASE shop CONNECTION LIMIT 2")
    h.hold(2, user="app", dbname="shop", app="worker")


@scenario("connections-many-idle", RB, "Application `worker` keeps 6 idle connections of 7 usable slots.",
          settings=CONN, answers={"pool-question": "serverless"},
          expect_path=["slots", "holders", "pool-question", "serverless"],
          roles={"postgres": ["slots", "holders", "pool-question", "serverless"], "plain": ["slots", "cannot-see"]})
def _many_idle(c: Cluster, h: Holder) -> None:
    h.hold(6, user="app", app="worker")


@scenario("connections-blind", RB,
          "Application `worker` holds 6 of 7 usable slots, 2 idle in transaction; kb connects as `plain`, "
          "a role without pg_read_all_stats, which sees its own session only.",
          settings=CONN, target_user="plain", params={"idle_seconds": 1},
          expect_path=["slots", "cannot-see"], expect_verdict="plain sees 1 client session(s), but ",
          roles={"postgres": ["slots", "holders", "terminate-zombies", "zombies-found"], "monitor": ["slots", "holders", "terminate-zombies", "zombies-found"]})
def _blind(c: Cluster, h: Holder) -> None:
    h.hold(4, user="app", app="worker")
    for _ in range(2):
        h.connect(user="app", app="worker", autocommit=False).execute("SELECT 1")
    time.sleep(1.2)


@scenario("connections-many-idle-two-hosts", RB,
          "Application `worker` keeps 4 idle connections, 2 from each of two client hosts, and `cron` 2: "
          "6 of 7 usable slots, and worker's share (67%) shows only when its hosts are added up.",
          settings=CONN, answers={"pool-question": "app-servers"},
          expect_path=["slots", "holders", "pool-question", "pool-math"],
          roles={"postgres": ["slots", "holders", "pool-question", "pool-math"], "plain": ["slots", "cannot-see"]})
def _many_idle_two_hosts(c: Cluster, h: Holder) -> None:
    h.hold(2, user="app", app="worker")
    h.hold(2, user="app", app="worker", socket=True)
    h.hold(2, user="app", app="cron")


def _zombies_gone(c: Cluster, h: Holder) -> None:
    deadline = time.monotonic() + 5  # terminated backends take a moment to exit
    while (left := c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing'")[0][0]) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == 0, f"{left} billing sessions still there"


@scenario("connections-idle-in-transaction", RB,
          "Three sessions of `billing` sit idle in transaction (older than a 1 s threshold).",
          settings=CONN, params={"idle_seconds": 1}, confirm={"terminate-zombies": True}, verify=_zombies_gone,
          expect_path=["slots", "limits", "zombies-check", "terminate-zombies", "zombies-terminated"],
          roles={"postgres": ["slots", "limits", "zombies-check", "terminate-zombies", "zombies-found"], "plain": ["slots", "cannot-see"]})
def _idle_in_tx(c: Cluster, h: Holder) -> None:
    for _ in range(3):
        conn = h.connect(user="app", app="billing", autocommit=False)
        conn.execute("SELECT 1")
    time.sleep(1.2)


@scenario("connections-idle-in-aborted-transaction", RB,
          "Two sessions of `billing` sit in a failed transaction nobody rolled back (idle in transaction "
          "(aborted)), older than a 1 s threshold: they hold their slots like any zombie.",
          settings=CONN, params={"idle_seconds": 1}, confirm={"terminate-zombies": True}, verify=_zombies_gone,
          expect_path=["slots", "limits", "zombies-check", "terminate-zombies", "zombies-terminated"],
          roles={"postgres": ["slots", "limits", "zombies-check", "terminate-zombies", "zombies-found"], "plain": ["slots", "cannot-see"]})
def _idle_in_aborted_tx(c: Cluster, h: Holder) -> None:
    for _ in range(2):
        conn = h.connect(user="app", app="billing", autocommit=False)
        try:
            conn.execute("SELECT 1 / 0")
        except psycopg.errors.DivisionByZero:
            pass  # the transaction stays open, aborted, until the client rolls it back
    time.sleep(1.2)
