"""Scenarios of the idle-in-transaction, lock-waits and deadlocks runbooks.

Everything is real: transactions left open in sessions the Holder keeps, statements that wait on a
lock (or sleep while holding one) in background threads, a prepared transaction, and deadlocks made
by two threads updating two rows in opposite order.
"""

from __future__ import annotations

import threading
import time

import psycopg
import psycopg.errors

from kb.pgcluster import Cluster
from kb.scenarios import Holder, scenario

IDLE = "idle-in-transaction"
LOCKS = "lock-waits"
DEADLOCKS = "deadlocks"


# --- helpers -----------------------------------------------------------------------------------

def _wait_for(c: Cluster, sql: str, params=None, timeout: float = 8.0, what: str = "") -> None:
    """Poll `sql` (first column of the first row) until it is truthy."""
    end = time.monotonic() + timeout
    while True:
        rows = c.sql(sql, params)
        if rows and rows[0][0]:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or sql}")
        time.sleep(0.05)


def _table(c: Cluster, owner: str = "app") -> None:
    """public.items with ten rows, owned by `owner` (so `app` may alter it)."""
    c.sql("CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL)")
    c.sql("INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 10) g")
    c.sql(f"ALTER TABLE public.items OWNER TO {owner}")


def _idle_in_tx(h: Holder, statement: str, user: str = "app", app: str = "") -> psycopg.Connection:
    """A session that ran `statement` in a transaction and now sits idle in it."""
    conn = h.connect(user=user, app=app, autocommit=False)
    conn.execute(statement)
    return conn


class Background:
    """One statement running in a thread on its own connection (waiting on a lock, or sleeping)."""

    def __init__(self, h: Holder, statement: str, user: str = "app", app: str = "", dbname: str = "postgres"):
        self.conn = psycopg.connect(h.cluster.dsn(user, dbname), application_name=app, autocommit=True,
                                    connect_timeout=5)
        self.conn.execute("SET statement_timeout = '60s'")
        self.pid = self.conn.info.backend_pid
        self.done = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(statement,), daemon=True)
        self.thread.start()
        h.extra.append(self.stop)

    def _run(self, statement: str) -> None:
        try:
            self.conn.execute(statement)
            self.done = True
        except BaseException as exc:  # noqa: BLE001 - kept for verify()
            self.error = exc

    def finished(self, timeout: float = 8.0) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def stop(self) -> None:
        if self.thread.is_alive():
            try:
                self.conn.cancel_safe(timeout=3)
            except (psycopg.Error, AttributeError):
                pass
            self.thread.join(5)
        try:
            self.conn.close()
        except psycopg.Error:
            pass


def _waits(c: Cluster, bg: Background) -> Background:
    """Return once `bg` waits on a lock."""
    _wait_for(c, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (bg.pid,),
              what=f"pid {bg.pid} to wait on a lock")
    return bg


def _sleeps(c: Cluster, bg: Background) -> Background:
    """Return once `bg` is inside pg_sleep."""
    _wait_for(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'", (bg.pid,),
              what=f"pid {bg.pid} to sleep")
    return bg


def _gone(c: Cluster, app: str) -> None:
    _wait_for(c, "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = %s", (app,),
              what=f"sessions of {app} to end")


# --- idle-in-transaction -----------------------------------------------------------------------

@scenario("idle-none-guarded", IDLE,
          "One session idle in a young transaction (below the 30 s threshold); role `app` has "
          "idle_in_transaction_session_timeout = 5min.",
          params={"idle_seconds": 30}, expect_path=["find", "timeout-setting", "none-found"])
def _idle_none_guarded(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE app SET idle_in_transaction_session_timeout = '5min'")
    h.connect(user="app", app="web")
    _idle_in_tx(h, "SELECT 1", app="web")


@scenario("idle-none-unguarded", IDLE,
          "Nothing idles in a transaction, but no timeout is configured anywhere.",
          params={"idle_seconds": 30}, expect_path=["find", "timeout-setting", "no-timeout"])
def _idle_none_unguarded(c: Cluster, h: Holder) -> None:
    h.hold(2, user="app", app="web")


def _billing_gone(c: Cluster, h: Holder) -> None:
    _gone(c, "billing")


@scenario("idle-terminated", IDLE,
          "Three `billing` sessions idle in transaction for more than 1 s, blocking nobody; terminated.",
          params={"idle_seconds": 1}, confirm={"terminate-idle": True}, verify=_billing_gone,
          expect_path=["find", "terminate-idle", "terminated"])
def _idle_terminated(c: Cluster, h: Holder) -> None:
    for _ in range(3):
        _idle_in_tx(h, "SELECT 1", app="billing")
    time.sleep(1.2)


def _billing_still_there(c: Cluster, h: Holder) -> None:
    n = c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing'")[0][0]
    assert n == 2, f"expected the 2 billing sessions to survive, found {n}"


@scenario("idle-declined", IDLE,
          "Two `billing` sessions idle in transaction for more than 1 s; the admin declines to terminate.",
          params={"idle_seconds": 1}, confirm={"terminate-idle": False}, verify=_billing_still_there,
          expect_path=["find", "terminate-idle", "idle-found"])
def _idle_declined(c: Cluster, h: Holder) -> None:
    for _ in range(2):
        _idle_in_tx(h, "SELECT 1", app="billing")
    time.sleep(1.2)


def _blocking_setup(c: Cluster, h: Holder, user: str = "app") -> Background:
    """`checkout` updated row 1 and went idle in transaction; `worker` waits to update the same row."""
    _table(c)
    if user != "app":
        c.sql("GRANT ALL ON public.items TO postgres")
    _idle_in_tx(h, "UPDATE public.items SET name = 'reserved' WHERE id = 1", user=user, app="checkout")
    bg = _waits(c, Background(h, "UPDATE public.items SET name = 'shipped' WHERE id = 1", app="worker"))
    time.sleep(1.2)
    return bg


def _waiter_went_on(c: Cluster, h: Holder) -> None:
    bg = h.waiter  # set by the scenario's setup
    assert bg.finished(), "the waiting UPDATE did not finish after its blocker was terminated"
    assert bg.error is None and bg.done, f"the waiting UPDATE failed: {bg.error!r}"
    _gone(c, "checkout")


@scenario("idle-blocking-terminated", IDLE,
          "`checkout` sits idle in transaction holding a row lock that `worker` waits for; terminated.",
          params={"idle_seconds": 1}, confirm={"terminate-blockers": True}, verify=_waiter_went_on,
          expect_path=["find", "terminate-blockers", "blockers-terminated"])
def _idle_blocking_terminated(c: Cluster, h: Holder) -> None:
    h.waiter = _blocking_setup(c, h)


def _waiter_still_waits(c: Cluster, h: Holder) -> None:
    assert h.waiter.thread.is_alive(), "the waiting UPDATE should still be waiting"
    n = c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'checkout'")[0][0]
    assert n == 1, "checkout should not have been terminated"


@scenario("idle-blocking-declined", IDLE,
          "`checkout` sits idle in transaction holding a row lock that `worker` waits for; declined.",
          params={"idle_seconds": 1}, confirm={"terminate-blockers": False}, verify=_waiter_still_waits,
          expect_path=["find", "terminate-blockers", "blocking-others"])
def _idle_blocking_declined(c: Cluster, h: Holder) -> None:
    h.waiter = _blocking_setup(c, h)


@scenario("idle-superuser-session", IDLE,
          "A superuser session idles in transaction; kb's `monitor` role (pg_signal_backend) may not end it.",
          params={"idle_seconds": 1}, confirm={"terminate-idle": True},
          verify=lambda c, h: _wait_for(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql-admin'"),
          expect_path=["find", "terminate-idle", "no-privilege"])
def _idle_superuser(c: Cluster, h: Holder) -> None:
    _idle_in_tx(h, "SELECT 1", user="postgres", app="psql-admin")
    time.sleep(1.2)


@scenario("idle-hidden", IDLE,
          "kb connects as `app` (no pg_read_all_stats) while a superuser session idles in transaction.",
          params={"idle_seconds": 1}, target_user="app", expect_path=["find", "cannot-see"])
def _idle_hidden(c: Cluster, h: Holder) -> None:
    _idle_in_tx(h, "SELECT 1", user="postgres", app="psql-admin")
    time.sleep(1.2)
