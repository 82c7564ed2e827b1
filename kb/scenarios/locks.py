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

from kb.scenarios.cluster import Cluster
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
          params={"idle_seconds": 30}, expect_path=["find", "timeout-setting", "none-found"],
          roles={"postgres": ["find", "timeout-setting", "none-found"], "plain": ["find", "cannot-see"]})
def _idle_none_guarded(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE app SET idle_in_transaction_session_timeout = '5min'")
    h.connect(user="app", app="web")
    _idle_in_tx(h, "SELECT 1", app="web")


@scenario("idle-none-unguarded", IDLE,
          "Nothing idles in a transaction, but no timeout is configured anywhere.",
          params={"idle_seconds": 30}, expect_path=["find", "timeout-setting", "no-timeout"],
          roles={"postgres": ["find", "timeout-setting", "no-timeout"], "plain": ["find", "cannot-see"]})
def _idle_none_unguarded(c: Cluster, h: Holder) -> None:
    h.hold(2, user="app", app="web")


def _billing_gone(c: Cluster, h: Holder) -> None:
    _gone(c, "billing")


@scenario("idle-terminated", IDLE,
          "Three `billing` sessions idle in transaction for more than 1 s, blocking nobody; terminated.",
          params={"idle_seconds": 1}, confirm={"terminate-idle": True}, verify=_billing_gone,
          expect_path=["find", "terminate-idle", "terminated"],
          roles={"postgres": ["find", "terminate-idle", "idle-found"], "plain": ["find", "cannot-see"]})
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
          expect_path=["find", "terminate-idle", "idle-found"],
          roles={"postgres": ["find", "terminate-idle", "idle-found"], "plain": ["find", "cannot-see"]})
def _idle_declined(c: Cluster, h: Holder) -> None:
    for _ in range(2):
        _idle_in_tx(h, "SELECT 1", app="billing")
    time.sleep(1.2)


def _blocking_setup(c: Cluster, h: Holder) -> Background:
    """`checkout` updated row 1 and went idle in transaction; `worker` waits to update the same row."""
    _table(c)
    _idle_in_tx(h, "UPDATE public.items SET name = 'reserved' WHERE id = 1", app="checkout")
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
          expect_path=["find", "terminate-blockers", "blockers-terminated"],
          roles={"postgres": ["find", "terminate-blockers", "blocking-others"], "plain": ["find", "cannot-see"]})
def _idle_blocking_terminated(c: Cluster, h: Holder) -> None:
    h.waiter = _blocking_setup(c, h)


def _waiter_still_waits(c: Cluster, h: Holder) -> None:
    assert h.waiter.thread.is_alive(), "the waiting UPDATE should still be waiting"
    n = c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'checkout'")[0][0]
    assert n == 1, "checkout should not have been terminated"


@scenario("idle-blocking-declined", IDLE,
          "`checkout` sits idle in transaction holding a row lock that `worker` waits for; declined.",
          params={"idle_seconds": 1}, confirm={"terminate-blockers": False}, verify=_waiter_still_waits,
          expect_path=["find", "terminate-blockers", "blocking-others"],
          roles={"postgres": ["find", "terminate-blockers", "blocking-others"], "plain": ["find", "cannot-see"]})
def _idle_blocking_declined(c: Cluster, h: Holder) -> None:
    h.waiter = _blocking_setup(c, h)


@scenario("idle-superuser-session", IDLE,
          "A superuser session idles in transaction; kb's `monitor` role (pg_signal_backend) may not end it.",
          params={"idle_seconds": 1}, confirm={"terminate-idle": True},
          verify=lambda c, h: _wait_for(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'psql-admin'"),
          expect_path=["find", "terminate-idle", "no-privilege"],
          roles={"postgres": ["find", "terminate-idle", "idle-found"], "plain": ["find", "cannot-see"]})
def _idle_superuser(c: Cluster, h: Holder) -> None:
    _idle_in_tx(h, "SELECT 1", user="postgres", app="psql-admin")
    time.sleep(1.2)


@scenario("idle-hidden", IDLE,
          "kb connects as `app` (no pg_read_all_stats) while a superuser session idles in transaction.",
          params={"idle_seconds": 1}, target_user="app", expect_path=["find", "cannot-see"])
def _idle_hidden(c: Cluster, h: Holder) -> None:
    _idle_in_tx(h, "SELECT 1", user="postgres", app="psql-admin")
    time.sleep(1.2)


# --- lock-waits --------------------------------------------------------------------------------

@scenario("locks-none", LOCKS, "Busy but healthy: sessions idle and one short transaction, nobody waits on a lock.",
          params={"wait_seconds": 1}, expect_path=["waits", "no-waits"],
          roles={"postgres": ["waits", "no-waits"], "plain": ["waits", "no-waits-unseen"]})
def _locks_none(c: Cluster, h: Holder) -> None:
    _table(c)
    h.hold(2, user="app", app="web")
    _idle_in_tx(h, "SELECT * FROM public.items WHERE id = 1 FOR UPDATE", app="web")


def _row_lock_chain(c: Cluster, h: Holder, holder_user: str = "app") -> None:
    """`checkout` (idle in transaction) holds row 1; `worker` and `report` queue for it."""
    _table(c)
    _idle_in_tx(h, "UPDATE public.items SET name = 'reserved' WHERE id = 1", user=holder_user, app="checkout")
    h.waiters = [_waits(c, Background(h, "UPDATE public.items SET name = 'shipped' WHERE id = 1", app="worker")),
                 _waits(c, Background(h, "SELECT * FROM public.items WHERE id = 1 FOR SHARE", app="report"))]
    time.sleep(1.1)


def _waiters_still_wait(h: Holder) -> None:
    for bg in h.waiters:
        assert bg.thread.is_alive(), f"pid {bg.pid} should still wait (nothing was terminated)"


def _waiters_went_on(c: Cluster, h: Holder) -> None:
    for bg in h.waiters:
        assert bg.finished(), f"pid {bg.pid} still waits after its blocker was stopped"
        assert bg.error is None, f"pid {bg.pid} failed: {bg.error!r}"


@scenario("locks-idle-blocker", LOCKS,
          "`checkout` sits idle in transaction on row 1; `worker` and `report` queue behind it; terminated.",
          params={"wait_seconds": 1}, confirm={"terminate-idle-root": True}, verify=_waiters_went_on,
          expect_path=["waits", "root", "terminate-idle-root", "recheck-terminate", "root-terminated"],
          roles={"postgres": ["waits", "root", "terminate-idle-root", "blocker-idle-in-transaction"], "plain": ["waits", "root", "cannot-see"]})
def _locks_idle_blocker(c: Cluster, h: Holder) -> None:
    _row_lock_chain(c, h)


@scenario("locks-idle-blocker-declined", LOCKS,
          "`checkout` sits idle in transaction on row 1 with two sessions queued; the admin declines.",
          params={"wait_seconds": 1}, confirm={"terminate-idle-root": False},
          verify=lambda c, h: _waiters_still_wait(h),
          expect_path=["waits", "root", "terminate-idle-root", "blocker-idle-in-transaction"],
          roles={"postgres": ["waits", "root", "terminate-idle-root", "blocker-idle-in-transaction"], "plain": ["waits", "root", "cannot-see"]})
def _locks_idle_blocker_declined(c: Cluster, h: Holder) -> None:
    _row_lock_chain(c, h)


@scenario("locks-superuser-blocker", LOCKS,
          "A superuser session idles in transaction on row 1; kb's `monitor` (pg_signal_backend) may not end it.",
          params={"wait_seconds": 1}, confirm={"terminate-idle-root": True},
          expect_path=["waits", "root", "terminate-idle-root", "no-privilege"],
          roles={"postgres": ["waits", "root", "terminate-idle-root", "blocker-idle-in-transaction"], "plain": ["waits", "root", "cannot-see"]})
def _locks_superuser_blocker(c: Cluster, h: Holder) -> None:
    _row_lock_chain(c, h, holder_user="postgres")


@scenario("locks-hidden-blocker", LOCKS,
          "kb connects as `app` (no pg_read_all_stats); a superuser session blocks app's update.",
          params={"wait_seconds": 1}, target_user="app", expect_path=["waits", "root", "cannot-see"])
def _locks_hidden_blocker(c: Cluster, h: Holder) -> None:
    _row_lock_chain(c, h, holder_user="postgres")


def _long_update(c: Cluster, h: Holder) -> None:
    """`nightly-batch` updates row 1 and then sleeps 30 s in the same statement; `worker` waits for the row."""
    _table(c)
    h.sleeper = _sleeps(c, Background(
        h, "WITH u AS (UPDATE public.items SET name = 'batch' WHERE id = 1 RETURNING id) SELECT pg_sleep(30) FROM u",
        app="nightly-batch"))
    h.waiters = [_waits(c, Background(h, "UPDATE public.items SET name = 'shipped' WHERE id = 1", app="worker"))]
    time.sleep(1.1)


def _sleeper_cancelled(c: Cluster, h: Holder) -> None:
    assert h.sleeper.finished(), "the long statement is still running"
    assert isinstance(h.sleeper.error, psycopg.errors.QueryCanceled), f"expected a cancel, got {h.sleeper.error!r}"
    _waiters_went_on(c, h)


@scenario("locks-long-query-cancel", LOCKS,
          "A 30 s statement of `nightly-batch` holds row 1; `worker` waits; the admin cancels the statement.",
          params={"wait_seconds": 1}, answers={"cancel-or-terminate": "cancel"}, confirm={"cancel-root": True},
          verify=_sleeper_cancelled,
          expect_path=["waits", "root", "cancel-or-terminate", "cancel-root", "recheck-cancel", "root-cancelled"],
          roles={"postgres": ["waits", "root", "cancel-or-terminate", "cancel-root", "blocker-long-query"], "plain": ["waits", "root", "cannot-see"]})
def _locks_long_query_cancel(c: Cluster, h: Holder) -> None:
    _long_update(c, h)


def _next_in_line_holds(c: Cluster, h: Holder) -> None:
    assert isinstance(h.sleeper.error, psycopg.errors.QueryCanceled), f"expected a cancel, got {h.sleeper.error!r}"
    assert not h.waiters[1].finished(0.2), "the last waiter got the row although the next batch holds it"


@scenario("locks-cancel-then-next-blocker", LOCKS,
          "`nightly-batch` holds row 1 in a 30 s statement; `second-batch` waits to do the same, and `worker` "
          "waits behind both. Cancelling the first lets the second take the row and sleep: the run must look "
          "again and say that a session still waits, not that the locks are released.",
          params={"wait_seconds": 1}, answers={"cancel-or-terminate": "cancel"}, confirm={"cancel-root": True},
          verify=_next_in_line_holds,
          expect_path=["waits", "root", "cancel-or-terminate", "cancel-root", "recheck-cancel", "still-blocked"],
          expect_verdict="1 session(s) still wait",
          roles={"postgres": ["waits", "root", "cancel-or-terminate", "cancel-root", "blocker-long-query"], "plain": ["waits", "root", "cannot-see"]})
def _locks_cancel_then_next_blocker(c: Cluster, h: Holder) -> None:
    _table(c)
    batch = "WITH u AS (UPDATE public.items SET name = '{}' WHERE id = 1 RETURNING id) SELECT pg_sleep(30) FROM u"
    h.sleeper = _sleeps(c, Background(h, batch.format("batch"), app="nightly-batch"))
    h.waiters = [_waits(c, Background(h, batch.format("second"), app="second-batch"))]  # first in the queue
    h.waiters.append(_waits(c, Background(h, "UPDATE public.items SET name = 'shipped' WHERE id = 1", app="worker")))
    time.sleep(1.1)


def _sleeper_terminated(c: Cluster, h: Holder) -> None:
    assert h.sleeper.finished(), "the long statement is still running"
    assert isinstance(h.sleeper.error, psycopg.OperationalError), f"expected a closed session, got {h.sleeper.error!r}"
    _waiters_went_on(c, h)


@scenario("locks-long-query-terminate", LOCKS,
          "A 30 s statement of `nightly-batch` holds row 1; `worker` waits; the admin ends the session.",
          params={"wait_seconds": 1}, answers={"cancel-or-terminate": "terminate"},
          confirm={"terminate-running-root": True}, verify=_sleeper_terminated,
          expect_path=["waits", "root", "cancel-or-terminate", "terminate-running-root", "recheck-terminate", "root-terminated"],
          roles={"postgres": ["waits", "root", "cancel-or-terminate", "terminate-running-root", "blocker-long-query"], "plain": ["waits", "root", "cannot-see"]})
def _locks_long_query_terminate(c: Cluster, h: Holder) -> None:
    _long_update(c, h)


@scenario("locks-long-query-leave", LOCKS,
          "A 30 s statement of `nightly-batch` holds row 1; `worker` waits; the admin lets it finish.",
          params={"wait_seconds": 1}, answers={"cancel-or-terminate": "leave"},
          expect_path=["waits", "root", "cancel-or-terminate", "blocker-long-query"],
          roles={"postgres": ["waits", "root", "cancel-or-terminate", "blocker-long-query"], "plain": ["waits", "root", "cannot-see"]})
def _locks_long_query_leave(c: Cluster, h: Holder) -> None:
    _long_update(c, h)


def _ddl_queue(c: Cluster, h: Holder) -> None:
    """A 30 s report reads items; a migration's ALTER TABLE waits for it; two readers queue behind the ALTER."""
    _table(c)
    h.sleeper = _sleeps(c, Background(h, "SELECT pg_sleep(30) FROM public.items WHERE id = 1", app="report"))
    h.ddl = _waits(c, Background(h, "ALTER TABLE public.items ADD COLUMN note text", app="migrate"))
    h.waiters = [_waits(c, Background(h, "SELECT count(*) FROM public.items", app="web")) for _ in range(2)]
    time.sleep(1.1)


def _ddl_cancelled(c: Cluster, h: Holder) -> None:
    assert h.ddl.finished(), "the ALTER TABLE still waits"
    assert isinstance(h.ddl.error, psycopg.errors.QueryCanceled), f"expected the DDL cancelled, got {h.ddl.error!r}"
    _waiters_went_on(c, h)
    assert h.sleeper.thread.is_alive(), "the long report should still run"


@scenario("locks-ddl-queue", LOCKS,
          "ALTER TABLE waits behind a 30 s report and two plain SELECTs queue behind the ALTER; the DDL is cancelled.",
          params={"wait_seconds": 1}, confirm={"cancel-ddl": True}, verify=_ddl_cancelled,
          expect_path=["waits", "root", "cancel-ddl", "recheck-ddl", "ddl-cancelled"],
          roles={"postgres": ["waits", "root", "cancel-ddl", "ddl-queue"], "plain": ["waits", "root", "cancel-ddl", "ddl-queue"]})
def _locks_ddl_queue(c: Cluster, h: Holder) -> None:
    _ddl_queue(c, h)


@scenario("locks-ddl-queue-declined", LOCKS,
          "ALTER TABLE waits behind a 30 s report with two SELECTs queued behind it; the admin declines.",
          params={"wait_seconds": 1}, confirm={"cancel-ddl": False},
          expect_path=["waits", "root", "cancel-ddl", "ddl-queue"],
          roles={"postgres": ["waits", "root", "cancel-ddl", "ddl-queue"], "plain": ["waits", "root", "cancel-ddl", "ddl-queue"]})
def _locks_ddl_queue_declined(c: Cluster, h: Holder) -> None:
    _ddl_queue(c, h)


@scenario("locks-prepared", LOCKS,
          "A prepared transaction (two-phase commit left behind) holds row 1; `worker` waits for it.",
          settings={"max_prepared_transactions": 2}, params={"wait_seconds": 1},
          expect_path=["waits", "root", "prepared-blocker"],
          roles={"postgres": ["waits", "root", "prepared-blocker"], "plain": ["waits", "root", "prepared-blocker"]})
def _locks_prepared(c: Cluster, h: Holder) -> None:
    _table(c)
    conn = h.connect(user="app", app="xa-coordinator", autocommit=False)
    conn.execute("UPDATE public.items SET name = 'reserved' WHERE id = 1")
    conn.execute("PREPARE TRANSACTION 'order-42'")
    h.extra.append(lambda: c.sql("ROLLBACK PREPARED 'order-42'"))
    h.waiters = [_waits(c, Background(h, "UPDATE public.items SET name = 'shipped' WHERE id = 1", app="worker"))]
    time.sleep(1.1)


# --- deadlocks ---------------------------------------------------------------------------------

FAST_DEADLOCKS = {"deadlock_timeout": "100ms"}


def _accounts(c: Cluster) -> None:
    """shop.accounts, owned by `app`, with three accounts."""
    c.sql("CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL)", user="app", dbname="shop")
    c.sql("INSERT INTO public.accounts VALUES (1, 100), (2, 100), (3, 100)", user="app", dbname="shop")


def _deadlock(c: Cluster, rounds: int = 1) -> None:
    """Two `transfer` threads update accounts 1 and 2 in opposite order until the detector kills one."""
    for _ in range(rounds):
        barrier = threading.Barrier(2, timeout=5)
        lost: list[BaseException] = []

        def transfer(first: int, second: int) -> None:
            with psycopg.connect(c.dsn("app", "shop"), application_name="transfer", connect_timeout=5) as conn:
                try:
                    conn.execute("UPDATE public.accounts SET balance = balance - 1 WHERE id = %s", (first,))
                    barrier.wait()
                    conn.execute("UPDATE public.accounts SET balance = balance + 1 WHERE id = %s", (second,))
                    conn.commit()
                except psycopg.errors.DeadlockDetected as exc:
                    lost.append(exc)
                    conn.rollback()

        threads = [threading.Thread(target=transfer, args=pair, daemon=True) for pair in ((1, 2), (2, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(lost) == 1, f"expected one deadlock victim, got {lost!r}"
    # the victims' sessions have closed; their statistics reach pg_stat_database on exit
    _wait_for(c, "SELECT sum(deadlocks) >= %s FROM pg_stat_database", (rounds,), what="the deadlock counter")


@scenario("deadlocks-transfers", DEADLOCKS,
          "Two transfers updated accounts 1 and 2 in opposite order, twice; log_lock_waits is on.",
          settings={**FAST_DEADLOCKS, "log_lock_waits": "on"}, answers={"pattern": "several-rows"},
          expect_path=["counter", "logging", "current-waits", "pattern", "lock-order"],
          roles={"postgres": ["counter", "logging", "current-waits", "pattern", "lock-order"], "plain": ["counter", "logging", "current-waits", "pattern", "lock-order"]})
def _deadlocks_transfers(c: Cluster, h: Holder) -> None:
    _accounts(c)
    _deadlock(c, rounds=2)


@scenario("deadlocks-queue", DEADLOCKS,
          "A deadlock was recorded; the person says queue workers hit it.",
          settings={**FAST_DEADLOCKS, "log_lock_waits": "on"}, answers={"pattern": "queue-workers"},
          expect_path=["counter", "logging", "current-waits", "pattern", "queue-workers"],
          roles={"postgres": ["counter", "logging", "current-waits", "pattern", "queue-workers"], "plain": ["counter", "logging", "current-waits", "pattern", "queue-workers"]})
def _deadlocks_queue(c: Cluster, h: Holder) -> None:
    _accounts(c)
    _deadlock(c)


@scenario("deadlocks-unlogged", DEADLOCKS,
          "A deadlock was recorded, but log_lock_waits is off.",
          settings={**FAST_DEADLOCKS, "log_lock_waits": "off"},
          expect_path=["counter", "logging", "deadlocks-logging-off"],
          roles={"postgres": ["counter", "logging", "deadlocks-logging-off"], "plain": ["counter", "logging", "deadlocks-logging-off"]})
def _deadlocks_unlogged(c: Cluster, h: Holder) -> None:
    _accounts(c)
    _deadlock(c)


@scenario("deadlocks-with-waits", DEADLOCKS,
          "A deadlock was recorded, and `checkout` idles in transaction on account 3 while `worker` waits for it.",
          settings={**FAST_DEADLOCKS, "log_lock_waits": "on"},
          expect_path=["counter", "logging", "current-waits", "deadlocks-with-waits"],
          roles={"postgres": ["counter", "logging", "current-waits", "deadlocks-with-waits"],
                 "plain": ["counter", "logging", "current-waits", "deadlocks-with-waits"]},
          # 13 has no pg_locks.waitstart: a wait is timed by query_start, hidden from a plain role
          roles_before={14: {"plain": ["counter", "logging", "current-waits", "waits-untimed"]}})
def _deadlocks_with_waits(c: Cluster, h: Holder) -> None:
    _accounts(c)
    _deadlock(c)
    conn = psycopg.connect(c.dsn("app", "shop"), application_name="checkout", connect_timeout=5)
    h.conns.append(conn)
    conn.execute("UPDATE public.accounts SET balance = 0 WHERE id = 3")
    _waits(c, Background(h, "UPDATE public.accounts SET balance = 1 WHERE id = 3", app="worker", dbname="shop"))
    time.sleep(0.3)


@scenario("deadlocks-none", DEADLOCKS,
          "Transfers run in a consistent order: no deadlock; log_lock_waits is on.",
          settings={**FAST_DEADLOCKS, "log_lock_waits": "on"}, expect_path=["counter", "logging-quiet", "none-recorded"],
          roles={"postgres": ["counter", "logging-quiet", "none-recorded"], "plain": ["counter", "logging-quiet", "none-recorded-unseen"]})
def _deadlocks_none(c: Cluster, h: Holder) -> None:
    _accounts(c)
    with psycopg.connect(c.dsn("app", "shop")) as conn:
        conn.execute("UPDATE public.accounts SET balance = balance - 1 WHERE id = 1")
        conn.execute("UPDATE public.accounts SET balance = balance + 1 WHERE id = 2")


@scenario("deadlocks-none-unlogged", DEADLOCKS,
          "No deadlock recorded, with the default log_lock_waits = off.",
          settings={"log_lock_waits": "off"}, expect_path=["counter", "logging-quiet", "none-recorded-unlogged"],
          roles={"postgres": ["counter", "logging-quiet", "none-recorded-unlogged"], "plain": ["counter", "logging-quiet", "none-recorded-unlogged"]})
def _deadlocks_none_unlogged(c: Cluster, h: Holder) -> None:
    _accounts(c)


@scenario("locks-unknown-role", "lock-waits",
          "kb's target names a role that does not exist: the run must say so and send the reader to that "
          "entry and the auth-failures runbook, not guess that the server is down.",
          target_user="ghost", reserved=False, expect_path=["waits", "cannot-connect"],
          expect_verdict='which is FATAL: role "..." does not exist. kb saw nothing on the server',
          expect_links=["/errors/role-does-not-exist", "/runbooks/auth-failures"])
def _unknown_role(c: Cluster, h: Holder) -> None:
    pass
