"""Scenarios of the slow-queries runbook.

Each puts a real workload on the cluster: a statement the scenario keeps running (pg_sleep), a
session queued behind a lock, a 200,000-row table without an index read by repeated sequential
scans, sorts that spill to temp files under a small work_mem, or a quiet database. With
pg_stat_statements the cluster loads it at start (shared_preload_libraries; every major from 13 to
18 that the scenarios run on ships it) and its statistics are reset once the setup is done, so only
the workload and kb's own statements are in it; without it the extension is left out, created
without being loaded, or installed in a schema kb does not read.
"""

from __future__ import annotations

import time

import psycopg

from kb.scenarios.cluster import Cluster
from kb.scenarios import Holder, scenario
from kb.scenarios.maintenance import _background, _wait_until as wait_until

RB = "slow-queries"
PGSS = {"shared_preload_libraries": "pg_stat_statements"}
# thresholds a workload of a few hundred milliseconds crosses and kb's own statements, a few
# milliseconds per run, do not
PARAMS = {"min_seconds": 1, "min_total_ms": 150, "min_seq_scans": 5, "min_temp_mb": 1}

# The SQL these scenarios reach is the same on every major, and every major's pg_stat_statements is
# covered by slowq-seq-scan and slowq-healthy: the others run only from 17, to keep the all-majors run short.
SPOT_CHECK = 17

SCANS = 20  # sequential scans of `orders` the workload makes
SPILLS = 4  # sorts that spill to temp files


def _wait_until(check, timeout: float = 15.0, every: float = 0.05) -> bool:
    return wait_until(check, timeout, every)


def _with_statements(c: Cluster, version: str | None = None) -> None:
    """CREATE EXTENSION pg_stat_statements in `postgres` (at `version`, or the binaries' default)."""
    c.sql("CREATE EXTENSION pg_stat_statements" + (f" VERSION '{version}'" if version else ""))


def _reset_statements(c: Cluster) -> None:
    c.sql("SELECT pg_stat_statements_reset()")


def _orders(c: Cluster) -> None:
    """`orders`: 200,000 rows and no index (about 20 MB, so scans of it are parallel)."""
    c.sql("CREATE TABLE public.orders (id bigint NOT NULL, customer_id int NOT NULL, note text)")
    c.sql("INSERT INTO public.orders SELECT g, g % 5000, repeat('x', 60) FROM generate_series(1, 200000) g")
    c.sql("GRANT SELECT ON public.orders TO app")


def _table_stat(c: Cluster, column: str) -> int:
    rows = c.sql(f"SELECT {column} FROM pg_stat_user_tables WHERE relid = 'public.orders'::regclass")
    return (rows[0][0] or 0) if rows else 0


def _scan_share(c: Cluster) -> tuple[float, float, list]:
    """The scans' execution time in pg_stat_statements (ms), their share of all of it (%), and the top five
    statements (for a failure message). Reads total_time where the extension is older than 1.8."""
    rows = c.sql("SELECT left(query, 80), calls, coalesce(to_jsonb(p) ->> 'total_exec_time',"
                 " to_jsonb(p) ->> 'total_time')::float8 AS ms FROM pg_stat_statements p ORDER BY ms DESC") or []
    total = sum(r[2] for r in rows) or 1.0
    scans = sum(r[2] for r in rows if "public.orders WHERE customer_id" in r[0])
    return scans, 100 * scans / total, rows[:5]


def _scan_orders(c: Cluster, pgss: bool = False) -> None:
    """The application `report` looks up customers by an unindexed column, SCANS times; the counts reach
    pg_stat_user_tables once its session has ended (and, before 15, once the collector has them).

    With pg_stat_statements (`pgss`) it goes on, ten scans at a time up to 10 x SCANS, until the scans
    hold 60% of the recorded execution time and twice min_total_ms: on a fast or a busy machine the
    runbook's thresholds are then crossed with room to spare, whatever else the cluster recorded."""
    done = 0
    with psycopg.connect(c.dsn("app"), autocommit=True, application_name="report", connect_timeout=5) as conn:
        for i in range(SCANS):
            conn.execute("SELECT count(*) FROM public.orders WHERE customer_id = %s", (i,))
        done = SCANS
        while pgss and done < 10 * SCANS:
            ms, share, _ = _scan_share(c)
            if share >= 60 and ms >= 2 * PARAMS["min_total_ms"]:
                break
            for i in range(10):
                conn.execute("SELECT count(*) FROM public.orders WHERE customer_id = %s", (done + i,))
            done += 10
    if pgss:
        ms, share, top = _scan_share(c)
        assert share >= 60 and ms >= 2 * PARAMS["min_total_ms"], \
            f"after {done} scans pg_stat_statements shows them at {ms:.0f} ms, {share:.0f}%: {top}"
    assert _wait_until(lambda: _table_stat(c, "seq_scan") >= done), "the scans did not reach pg_stat_user_tables"


def _temp_bytes(c: Cluster) -> int:
    return c.sql("SELECT temp_bytes FROM pg_stat_database WHERE datname = 'postgres'")[0][0]


def _spill(c: Cluster) -> None:
    """The application `export` sorts 300,000 rows SPILLS times with work_mem = 64kB: each sort writes
    temp files (about 4 MB)."""
    before = _temp_bytes(c)
    with psycopg.connect(c.dsn("app"), autocommit=True, application_name="export", connect_timeout=5) as conn:
        conn.execute("SET work_mem = '64kB'")
        for _ in range(SPILLS):
            conn.execute("SELECT sum(n) FROM (SELECT g AS n FROM generate_series(1, 300000) g"
                         " ORDER BY g DESC OFFSET 1) AS sorted")
    assert _wait_until(lambda: _temp_bytes(c) - before >= 1024 * 1024), "the temp files did not reach pg_stat_database"


def _sleeping(c: Cluster, h: Holder) -> None:
    conn = h.connect(user="app", app="report")
    _background(h, conn, "SELECT pg_sleep(30)", "report")
    assert _wait_until(lambda: c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'report'"
                                     " AND state = 'active'")[0][0] == 1, 5), "pg_sleep did not start"
    time.sleep(1.3)


# the paths ---------------------------------------------------------------------------------------
_NOW = ["running-now"]
_HISTORY = _NOW + ["statements-extension", "top-statements", "top-statement"]
_BLIND = _NOW + ["statements-extension", "table-scans", "temp-files"]
_QUIET = _NOW + ["statements-extension", "top-statements", "table-scans", "temp-files"]
_REFUSED = _NOW + ["statements-extension", "top-statements", "statements-refused"]


@scenario("slowq-running-now", RB,
          "Application `report` runs SELECT pg_sleep(30) right now; kb treats anything over 1 s as slow. "
          "pg_stat_statements is loaded, but a running statement is not in it until it ends.",
          settings=PGSS, params=PARAMS, expect_path=_NOW + ["running-statement"],
          expect_verdict="(role app, database postgres, application report)",
          roles={"postgres": _NOW + ["running-statement"], "plain": _QUIET + ["not-all-visible"]})
def _running_now(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    _reset_statements(c)
    _sleeping(c, h)


@scenario("slowq-lock-wait", RB,
          "`migrate` holds ACCESS EXCLUSIVE on `orders` in an open transaction; `report`'s SELECT has "
          "waited behind it for over a second. pg_locks shows the wait to every role, and from 14 its start.",
          params=PARAMS, expect_path=_NOW + ["lock-waits"],
          expect_verdict="(role app, database postgres, application report)",
          roles={"postgres": _NOW + ["lock-waits"], "plain": _NOW + ["lock-waits"]},
          roles_before={14: {"plain": _BLIND + ["no-history"]}})
def _lock_wait(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.orders (id int PRIMARY KEY)")
    c.sql("GRANT ALL ON public.orders TO app")
    migrate = h.connect(user="app", app="migrate", autocommit=False)
    migrate.execute("LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE")
    waiter = h.connect(user="app", app="report")
    _background(h, waiter, "SELECT count(*) FROM public.orders", "report")
    assert _wait_until(lambda: c.sql("SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0] == 1, 5), \
        "the SELECT is not waiting"
    time.sleep(1.3)


@scenario("slowq-seq-scan", RB,
          f"`orders` has 200,000 rows and no index; application `report` counted one customer's orders "
          f"at least {SCANS} times, each a sequential scan. pg_stat_statements ranks that statement first.",
          settings=PGSS, params=PARAMS, expect_path=_HISTORY + ["statement-seq-scan"],
          expect_verdict="table public.orders (200000 rows",
          roles={"postgres": _HISTORY + ["statement-seq-scan"], "plain": _HISTORY + ["statement-hidden"]})
def _seq_scan(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    _orders(c)
    _reset_statements(c)
    _scan_orders(c, pgss=True)


@scenario("slowq-seq-scan-not-loaded", RB,
          "The same scans of `orders`; pg_stat_statements was created in `postgres` but is not in "
          "shared_preload_libraries, so it cannot be read.",
          params=PARAMS, expect_path=_BLIND[:3] + ["seq-scan"],
          expect_verdict="is installed in database postgres but not loaded",
          roles={"postgres": _BLIND[:3] + ["seq-scan"], "plain": _BLIND[:3] + ["seq-scan"]},
          min_version=SPOT_CHECK)
def _seq_scan_not_loaded(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    _orders(c)
    _scan_orders(c)


@scenario("slowq-old-extension", RB,
          "The same scans of `orders`, with pg_stat_statements 1.7 (never updated): its times are "
          "total_time and mean_time, not total_exec_time and mean_exec_time.",
          settings=PGSS, params=PARAMS, expect_path=_HISTORY + ["statement-seq-scan"],
          expect_verdict="table public.orders (200000 rows",
          roles={"postgres": _HISTORY + ["statement-seq-scan"], "plain": _HISTORY + ["statement-hidden"]},
          min_version=18)
def _old_extension(c: Cluster, h: Holder) -> None:
    _with_statements(c, "1.7")
    _orders(c)
    _reset_statements(c)
    _scan_orders(c, pgss=True)


@scenario("slowq-dominant", RB,
          "Application `batch` ran SELECT pg_sleep(0.1) three times: 300 ms of execution time that reads "
          "no table and writes no temp file. pg_stat_statements ranks it first.",
          settings=PGSS, params=PARAMS, expect_path=_HISTORY + ["dominant-statement"],
          expect_verdict="in 3 calls (",
          roles={"postgres": _HISTORY + ["dominant-statement"], "plain": _HISTORY + ["statement-hidden"]},
          min_version=SPOT_CHECK)
def _dominant(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    _reset_statements(c)
    with psycopg.connect(c.dsn("app"), autocommit=True, application_name="batch", connect_timeout=5) as conn:
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.1)")


@scenario("slowq-temp-spill", RB,
          f"Application `export` sorted 300,000 rows {SPILLS} times with work_mem = 64kB; pg_stat_statements "
          "ranks that sort first, with its temp blocks.",
          settings=PGSS, params=PARAMS, expect_path=_HISTORY + ["statement-spills"],
          expect_verdict="to temp files: its sorts or hashes do not fit in work_mem",
          roles={"postgres": _HISTORY + ["statement-spills"], "plain": _HISTORY + ["statement-hidden"]},
          min_version=SPOT_CHECK)
def _temp_spill(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    _reset_statements(c)
    _spill(c)


@scenario("slowq-temp-spill-no-extension", RB,
          "The same spilling sorts; pg_stat_statements is not installed (the binaries have it).",
          params=PARAMS, expect_path=_BLIND + ["temp-spill"],
          expect_verdict="is not installed in database postgres (the server has the extension)",
          roles={"postgres": _BLIND + ["temp-spill"], "plain": _BLIND + ["temp-spill"]},
          min_version=SPOT_CHECK)
def _temp_spill_no_extension(c: Cluster, h: Holder) -> None:
    _spill(c)


def _quiet(c: Cluster, h: Holder) -> None:
    """`customers` with a primary key, looked up by it a few times; `web` stays connected, idle."""
    c.sql("CREATE TABLE public.customers (id int PRIMARY KEY, name text)")
    c.sql("INSERT INTO public.customers SELECT g, 'c' || g FROM generate_series(1, 1000) g")
    c.sql("GRANT SELECT ON public.customers TO app")
    web = h.connect(user="app", app="web")
    for i in range(5):
        web.execute("SELECT name FROM public.customers WHERE id = %s", (i,))


@scenario("slowq-healthy", RB,
          "A quiet database with pg_stat_statements: a few primary-key lookups by `web`, nothing running.",
          settings=PGSS, params=PARAMS, expect_path=_QUIET + ["healthy"],
          roles={"postgres": _QUIET + ["healthy"], "plain": _QUIET + ["not-all-visible"]})
def _healthy(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    _quiet(c, h)
    _reset_statements(c)


@scenario("slowq-healthy-other-schema", RB,
          "The same quiet database, with pg_stat_statements loaded but installed in schema `extensions`, "
          "which is not on kb's search_path: nothing looks slow, but finished statements cannot be seen.",
          settings=PGSS, params=PARAMS, expect_path=_BLIND + ["no-history"],
          expect_verdict="is installed in schema extensions (not on kb's search_path",
          roles={"postgres": _BLIND + ["no-history"], "plain": _BLIND + ["no-history"]},
          min_version=SPOT_CHECK)
def _healthy_other_schema(c: Cluster, h: Holder) -> None:
    c.sql("CREATE SCHEMA extensions")
    c.sql("CREATE EXTENSION pg_stat_statements SCHEMA extensions")
    _quiet(c, h)


@scenario("slowq-statements-refused", RB,
          "The same quiet database; SELECT on pg_stat_statements was revoked from PUBLIC, so only the "
          "superuser may read it.",
          settings=PGSS, params=PARAMS, expect_path=_REFUSED,
          roles={"postgres": _QUIET + ["healthy"], "plain": _REFUSED},
          min_version=SPOT_CHECK)
def _statements_refused(c: Cluster, h: Holder) -> None:
    _with_statements(c)
    c.sql("REVOKE SELECT ON pg_stat_statements FROM PUBLIC")
    _quiet(c, h)
    _reset_statements(c)
