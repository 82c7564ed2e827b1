"""Scenarios of the autovacuum-bloat runbook.

Dead tuples made for real (rows deleted after an ANALYZE, so each table's threshold is the one
autovacuum computes) and the states that keep them: autovacuum off for the server, off for a table,
track_counts off; a REPEATABLE READ snapshot left idle in its transaction, a prepared transaction and
a logical slot's catalog_xmin, each shown to survive a VACUUM; an autovacuum worker throttled to a
crawl by its table's cost limit (with one worker in all, so other tables wait); a LOCK TABLE that
makes autovacuum skip a table, and the same lock holding an anti-wraparound autovacuum waiting.
Where autovacuum is not part of the story, autovacuum_naptime is ten minutes so no worker comes by.
"""

from __future__ import annotations

import time

import psycopg

from kb.scenarios.cluster import Cluster
from kb.scenarios import Holder, scenario

VAC = "autovacuum-bloat"
QUIET = {"autovacuum_naptime": "600"}  # a fresh cluster's first visit per database comes minutes later
BUSY = {"autovacuum_naptime": "1"}

# Every state here reproduces on 13 to 18. The SQL is the same on every major; the paths that differ by
# major (what pg_stat_progress_vacuum and pg_stat_activity show each role, terminating and looking again,
# the thresholds with and without 18's cap) are covered on all of them by vacuum-horizon-held,
# vacuum-workers-busy and vacuum-healthy (and tests/test_autovacuum_thresholds.py); the others run only on
# the newest major, to keep the all-majors run short.
SPOT_CHECK = 18

_TABLES = ["tables", "horizon"]
_WORKERS = ["tables", "horizon", "workers"]


def _same(path: list[str]) -> dict[str, list[str]]:
    return {"postgres": path, "plain": path}


def _until(check, what: str, timeout: float = 15.0, every: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def _table(c: Cluster, name: str, rows: int = 10000, options: str = "", key: bool = True) -> None:
    """public.<name> with `rows` rows, analyzed (so reltuples is known), that `app` may change."""
    with_ = f" WITH ({options})" if options else ""
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{name} (id int{' PRIMARY KEY' if key else ''}, note text){with_}")
        conn.execute(f"INSERT INTO public.{name} SELECT g, 'row ' || g FROM generate_series(1, {int(rows)}) g")
        conn.execute(f"ANALYZE public.{name}")
        conn.execute(f"GRANT ALL ON public.{name} TO app")


def _dead(c: Cluster, name: str) -> int:
    return c.sql("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass", (f"public.{name}",))[0][0]


def _delete(c: Cluster, name: str, n: int) -> None:
    """The application deletes the first `n` rows; waits until the statistics count them (13 and 14
    send them to the statistics collector, which takes a moment)."""
    c.sql(f"DELETE FROM public.{name} WHERE id <= {int(n)}", user="app")
    _until(lambda: _dead(c, name) >= n, f"{n} dead tuples counted in {name}")


def _vacuums(c: Cluster, table: str) -> int:
    return c.sql("SELECT vacuum_count FROM pg_stat_all_tables WHERE relid = %s::regclass", (table,))[0][0]


def _vacuum_keeps(c: Cluster, table: str, n: int) -> None:
    """VACUUM `table` and check that at least `n` dead tuples are still counted once the statistics
    have the VACUUM's own report (13 and 14's collector takes a moment): it could not remove them."""
    before = _vacuums(c, table)
    c.sql(f"VACUUM {table}")
    _until(lambda: _vacuums(c, table) > before, f"the statistics of the VACUUM of {table}")
    left = c.sql("SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = %s::regclass", (table,))[0][0]
    assert left >= n, f"VACUUM removed dead tuples of {table} ({left} left of {n}): nothing held them"


def _burn_xids(c: Cluster, n: int) -> None:
    """Consume `n` transaction IDs: txid_current() in a DO block that commits after each."""
    c.sql(f"DO $$ BEGIN FOR i IN 1..{int(n)} LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$")


# --- autovacuum off --------------------------------------------------------------------------------

@scenario("vacuum-table-disabled", VAC,
          "Table `audit_log` has autovacuum_enabled = false; the application deleted 4,000 of its 10,000 rows.",
          settings=QUIET, expect_path=["tables", "table-autovacuum-disabled"],
          expect_verdict="public.audit_log has autovacuum_enabled = false and 4000 dead tuples",
          roles=_same(["tables", "table-autovacuum-disabled"]), min_version=SPOT_CHECK)
def _table_disabled(c: Cluster, h: Holder) -> None:
    _table(c, "audit_log", options="autovacuum_enabled = false")
    _delete(c, "audit_log", 4000)


@scenario("vacuum-autovacuum-off", VAC,
          "autovacuum = off for the server; the application deleted 4,000 of the 10,000 rows of `events`.",
          settings={"autovacuum": "off"}, expect_path=["tables", "autovacuum-off"],
          expect_verdict="public.events has 4000 dead tuples",
          roles=_same(["tables", "autovacuum-off"]), min_version=SPOT_CHECK)
def _autovacuum_off(c: Cluster, h: Holder) -> None:
    _table(c, "events")
    _delete(c, "events", 4000)


@scenario("vacuum-track-counts-off", VAC,
          "track_counts = off: the server counts no dead tuples and autovacuum does not start.",
          settings={"track_counts": "off"}, expect_path=["tables", "track-counts-off"],
          roles=_same(["tables", "track-counts-off"]), min_version=SPOT_CHECK)
def _track_counts_off(c: Cluster, h: Holder) -> None:
    _table(c, "events")
    c.sql("DELETE FROM public.events WHERE id <= 4000", user="app")


# --- the xmin horizon ------------------------------------------------------------------------------

def _holder_gone_and_vacuumed(c: Cluster, h: Holder) -> None:
    _until(lambda: c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reporting'")[0][0] == 0,
           "the reporting session to exit", timeout=5)
    c.sql("VACUUM public.orders")
    _until(lambda: _dead(c, "orders") == 0, "VACUUM to remove the dead tuples once the snapshot is gone", timeout=5)


@scenario("vacuum-horizon-held", VAC,
          "Application `reporting` opened a REPEATABLE READ transaction, read `orders` and sits idle in it; "
          "then 4,000 rows of `orders` were deleted and a VACUUM left all 4,000 dead tuples. kb treats a "
          "transaction open for 1 s as long, and the admin terminates it.",
          settings=QUIET, params={"holder_seconds": 1}, confirm={"terminate-holders": True},
          verify=_holder_gone_and_vacuumed,
          expect_path=_TABLES + ["terminate-holders", "horizon-recheck", "horizon-released"],
          expect_verdict="public.orders still counts 4000 dead tuples",
          roles={"postgres": _TABLES + ["terminate-holders", "holders-kept", "long-transaction"],
                 "plain": _TABLES + ["holder-hidden"]})
def _horizon_held(c: Cluster, h: Holder) -> None:
    _table(c, "orders")
    reporting = h.connect(user="app", app="reporting", autocommit=False)
    reporting.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    reporting.execute("SELECT count(*) FROM public.orders")  # the snapshot: every row it saw must stay
    opened = time.monotonic()
    _delete(c, "orders", 4000)
    _vacuum_keeps(c, "public.orders", 4000)
    time.sleep(max(0.0, 1.2 - (time.monotonic() - opened)))


@scenario("vacuum-prepared-transaction", VAC,
          "A transaction of `app` was PREPAREd as 'batch-42' and never committed; 4,000 rows of `orders` were "
          "deleted after it and a VACUUM left them. kb treats an xmin 50 XIDs old as old; 100 have passed.",
          settings={**QUIET, "max_prepared_transactions": 2}, params={"holder_xids": 50},
          expect_path=_TABLES + ["prepared-transaction"], expect_verdict="Prepared transaction batch-42 (owner app",
          roles=_same(_TABLES + ["prepared-transaction"]), min_version=SPOT_CHECK)
def _prepared(c: Cluster, h: Holder) -> None:
    _table(c, "orders")
    c.sql("CREATE TABLE public.ledger (id int, amount int)")
    c.sql("GRANT ALL ON public.ledger TO app")
    with psycopg.connect(c.dsn("app"), autocommit=False) as conn:
        conn.execute("INSERT INTO public.ledger VALUES (1, 100)")
        conn.execute("PREPARE TRANSACTION 'batch-42'")
        conn.commit()  # ends psycopg's view of it; the prepared transaction stays on the server
    _delete(c, "orders", 4000)
    _vacuum_keeps(c, "public.orders", 4000)
    _burn_xids(c, 100)


def _catalog_dead(c: Cluster) -> int:
    return c.sql("SELECT n_dead_tup FROM pg_stat_sys_tables WHERE relid = 'pg_catalog.pg_attribute'::regclass")[0][0]


@scenario("vacuum-logical-slot", VAC,
          "A logical replication slot `cdc_orders` (test_decoding) that nobody consumes; then an importer created "
          "and dropped 150 temporary tables, and a VACUUM of pg_attribute could remove none of their rows: the "
          "slot's catalog_xmin holds the system catalogs back. kb treats an xmin 100 XIDs old as old.",
          settings={**QUIET, "wal_level": "logical"}, params={"holder_xids": 100},
          expect_path=_TABLES + ["replication-slot"], expect_verdict="replication slot cdc_orders (logical, inactive",
          roles=_same(_TABLES + ["replication-slot"]), min_version=SPOT_CHECK)
def _logical_slot(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_logical_replication_slot('cdc_orders', 'test_decoding')")
    with psycopg.connect(c.dsn("app"), autocommit=True, application_name="importer") as conn:
        conn.execute("DO $$ BEGIN FOR i IN 1..150 LOOP"
                     " EXECUTE format('CREATE TEMP TABLE staging_%s (id int, sku text, qty int)', i);"
                     " EXECUTE format('DROP TABLE staging_%s', i); COMMIT; END LOOP; END $$")
    _until(lambda: _catalog_dead(c) >= 1500, "the dropped temporary tables' pg_attribute rows to be counted")
    _vacuum_keeps(c, "pg_catalog.pg_attribute", 1500)


# --- autovacuum at work, or kept away ---------------------------------------------------------------

# A worker with cost limit 1 and cost delay 100 ms sleeps up to 400 ms after every page: the 221 pages
# of `big` take it well over a minute, longer than any scenario runs.
SLOW = "autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_cost_delay = 100"


def _worker_on(c: Cluster, name: str) -> bool:
    return c.sql("SELECT count(*) FROM pg_stat_progress_vacuum WHERE relid = %s::regclass",
                 (f"public.{name}",))[0][0] > 0


def _slow_worker_on_big(c: Cluster) -> None:
    """`big` (30,000 rows, a third deleted) with a crawling cost limit, and autovacuum's worker on it."""
    _table(c, "big", rows=30000, options=SLOW, key=False)
    c.sql("DELETE FROM public.big WHERE id % 3 = 0", user="app")
    _until(lambda: _worker_on(c, "big"), "an autovacuum worker to start on big", timeout=30)


@scenario("vacuum-running-throttled", VAC,
          "Table `big` sets autovacuum_vacuum_cost_limit = 1 and autovacuum_vacuum_cost_delay = 100 ms; 10,000 "
          "of its 30,000 rows were deleted and autovacuum's worker now crawls through it.",
          settings={**BUSY, "autovacuum_max_workers": 1},
          expect_path=_WORKERS + ["vacuum-running"],
          expect_verdict="cost limit 1, cost delay 100 ms (the table's own reloptions)",
          roles={"postgres": _WORKERS + ["vacuum-running"], "plain": _WORKERS + ["workers-hidden"]},
          min_version=SPOT_CHECK)
def _running_throttled(c: Cluster, h: Holder) -> None:
    _slow_worker_on_big(c)


@scenario("vacuum-workers-busy", VAC,
          "autovacuum_max_workers = 1, and that one worker crawls through `big` (cost limit 1, delay 100 ms); "
          "15,000 of the 30,000 rows of `orders` were deleted after it started, and `orders` waits.",
          settings={**BUSY, "autovacuum_max_workers": 1},
          expect_path=_WORKERS + ["workers-busy"], expect_verdict="autovacuum: VACUUM ANALYZE public.big",
          roles={"postgres": _WORKERS + ["workers-busy"], "plain": _WORKERS + ["workers-hidden"]})
def _workers_busy(c: Cluster, h: Holder) -> None:
    _table(c, "orders", rows=30000)
    _slow_worker_on_big(c)
    _delete(c, "orders", 15000)


@scenario("vacuum-table-locked", VAC,
          "Job `nightly-export` ran LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE and idles in its transaction; "
          "4,000 rows of `orders` were deleted, and a VACUUM (SKIP_LOCKED), which asks for the lock the way "
          "autovacuum does, skipped the table.",
          settings=QUIET, expect_path=_WORKERS + ["table-locked"],
          expect_verdict="holds ShareUpdateExclusiveLock on public.orders",
          roles=_same(_WORKERS + ["table-locked"]), min_version=SPOT_CHECK)
def _table_locked(c: Cluster, h: Holder) -> None:
    _table(c, "orders")
    job = h.connect(user="app", app="nightly-export", autocommit=False)
    job.execute("LOCK TABLE public.orders IN SHARE UPDATE EXCLUSIVE MODE")  # no XID, and no snapshot once idle
    _delete(c, "orders", 4000)
    said: list[str] = []
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: said.append(diag.message_primary))
        conn.execute("VACUUM (SKIP_LOCKED) public.orders")
    assert 'skipping vacuum of "orders" --- lock not available' in said, said


def _vacuum_waits(c: Cluster, name: str) -> bool:
    return c.sql("SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted"
                 " AND mode = 'ShareUpdateExclusiveLock'", (f"public.{name}",))[0][0] > 0


@scenario("vacuum-worker-blocked", VAC,
          "Job `nightly-export` holds LOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE in an idle transaction; "
          "4,000 rows were deleted and 110,000 XIDs consumed past autovacuum_freeze_max_age (100,000), so an "
          "anti-wraparound autovacuum of `orders` waits for the lock instead of skipping it.",
          settings={**BUSY, "autovacuum_freeze_max_age": 100000},
          expect_path=_WORKERS + ["worker-blocked"], expect_verdict="(to prevent wraparound)) has waited",
          # the waiting worker's snapshot shows the plain role an xmin it cannot place
          roles={"postgres": _WORKERS + ["worker-blocked"], "plain": _TABLES + ["holder-hidden"]},
          min_version=SPOT_CHECK)
def _worker_blocked(c: Cluster, h: Holder) -> None:
    _table(c, "orders")
    job = h.connect(user="app", app="nightly-export", autocommit=False)
    job.execute("LOCK TABLE public.orders IN SHARE UPDATE EXCLUSIVE MODE")
    _delete(c, "orders", 4000)
    _burn_xids(c, 110000)
    _until(lambda: _vacuum_waits(c, "orders"), "the anti-wraparound autovacuum to wait for the lock on orders",
           timeout=30)


@scenario("vacuum-not-yet", VAC,
          "4,000 of the 10,000 rows of `orders` were just deleted; nothing holds or locks anything, and with "
          "autovacuum_naptime = 10min no worker has come to the database yet.",
          settings=QUIET, expect_path=_WORKERS + ["autovacuum-behind"],
          expect_verdict="autovacuum_naptime is 10min",
          roles={"postgres": _WORKERS + ["autovacuum-behind"], "plain": _WORKERS + ["workers-hidden"]},
          min_version=SPOT_CHECK)
def _not_yet(c: Cluster, h: Holder) -> None:
    _table(c, "orders")
    _delete(c, "orders", 4000)


@scenario("vacuum-healthy", VAC,
          "`orders` has 10,000 rows of which 100 were updated (100 dead tuples, below its threshold of 2,050); "
          "application `web` is connected and idle.",
          settings=QUIET, expect_path=_TABLES + ["healthy"],
          roles={"postgres": _TABLES + ["healthy"], "plain": _TABLES + ["not-over-hidden"]})
def _healthy(c: Cluster, h: Holder) -> None:
    _table(c, "orders")
    c.sql("UPDATE public.orders SET note = 'updated' WHERE id <= 100", user="app")
    _until(lambda: _dead(c, "orders") >= 100, "100 dead tuples counted in orders")
    h.connect(user="app", app="web")
