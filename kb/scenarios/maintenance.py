"""Scenarios of the long-running-queries, xid-wraparound and lock-table-exhaustion runbooks."""

from __future__ import annotations

import threading
import time

import psycopg

from kb.pgcluster import Cluster
from kb.scenarios import Holder, scenario


def _wait_until(check, timeout: float = 5.0, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(every)
    return check()


def _background(h: Holder, conn: psycopg.Connection, sql: str, app: str) -> threading.Thread:
    """Run `sql` on `conn` in a thread (it ends in an error when cancelled); cleanup cancels it first."""

    def work():
        try:
            conn.execute(sql)
        except psycopg.Error:
            pass

    t = threading.Thread(target=work, daemon=True, name=f"scenario-{app}")
    t.start()

    def stop():
        try:
            h.cluster.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,))
        except psycopg.Error:
            pass
        t.join(5)

    h.extra.append(stop)
    return t


def _active(c: Cluster, app: str) -> int:
    return c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (app,))[0][0]


# --- long-running-queries ---------------------------------------------------------------------------
LONGQ = "long-running-queries"


def _sleep_cancelled(c: Cluster, h: Holder) -> None:
    assert _wait_until(lambda: _active(c, "report") == 0), "the pg_sleep backend is still active"
    left = c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'report'")[0][0]
    assert left == 1, "pg_cancel_backend must cancel the statement, not end the session"


def _sleep_left(c: Cluster, h: Holder) -> None:
    assert _active(c, "report") == 1, "declining must leave the statement running"


@scenario("longq-sleeping", LONGQ,
          "Application `report` runs SELECT pg_sleep(30); kb treats anything over 1 s as long and cancels it.",
          params={"min_seconds": 1}, confirm={"cancel-long-queries": True}, verify=_sleep_cancelled,
          expect_path=["long-queries", "cancel-long-queries", "cancelled"])
def _sleeping(c: Cluster, h: Holder) -> None:
    conn = h.connect(user="app", app="report")
    _background(h, conn, "SELECT pg_sleep(30)", "report")
    assert _wait_until(lambda: _active(c, "report") == 1), "pg_sleep did not start"
    time.sleep(1.3)


@scenario("longq-declined", LONGQ, "Same pg_sleep(30) as longq-sleeping, but the admin declines the cancel.",
          params={"min_seconds": 1}, confirm={"cancel-long-queries": False}, verify=_sleep_left,
          expect_path=["long-queries", "cancel-long-queries", "left-running"])
def _declined(c: Cluster, h: Holder) -> None:
    _sleeping(c, h)


@scenario("longq-lock-wait", LONGQ,
          "`migrate` holds ACCESS EXCLUSIVE on `orders` in an open transaction; `report`'s SELECT waits behind it.",
          params={"min_seconds": 1}, expect_path=["long-queries", "waiting-on-locks"])
def _lock_wait(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.orders (id int PRIMARY KEY)")
    c.sql("GRANT ALL ON public.orders TO app")
    holder = h.connect(user="app", app="migrate", autocommit=False)
    holder.execute("LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")
    waiter = h.connect(user="app", app="report")
    _background(h, waiter, "SELECT count(*) FROM public.orders", "report")
    assert _wait_until(lambda: c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'report'"
                                     " AND wait_event_type = 'Lock'")[0][0] == 1), "the SELECT is not waiting"
    time.sleep(1.3)


@scenario("longq-no-timeout", LONGQ,
          "Nothing runs long; application `web` is connected with no statement_timeout anywhere.",
          params={"min_seconds": 1}, expect_path=["long-queries", "timeouts", "no-timeout"])
def _no_timeout(c: Cluster, h: Holder) -> None:
    h.connect(user="app", app="web")


@scenario("longq-healthy", LONGQ,
          "Nothing runs long and role `app` has statement_timeout = 30s (ALTER ROLE).",
          expect_path=["long-queries", "timeouts", "none"])
def _healthy(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE app SET statement_timeout = '30s'")
    h.connect(user="app", app="web")
