"""Scenarios of the long-running-queries, xid-wraparound and lock-table-exhaustion runbooks."""

from __future__ import annotations

import threading
import time

import psycopg

from kb.scenarios.cluster import Cluster
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
          expect_path=["long-queries", "cancel-long-queries", "cancelled"],
          roles={"postgres": ["long-queries", "cancel-long-queries", "left-running"], "plain": ["long-queries", "timeouts", "no-visibility"]})
def _sleeping(c: Cluster, h: Holder) -> None:
    conn = h.connect(user="app", app="report")
    _background(h, conn, "SELECT pg_sleep(30)", "report")
    assert _wait_until(lambda: _active(c, "report") == 1), "pg_sleep did not start"
    time.sleep(1.3)


@scenario("longq-declined", LONGQ, "Same pg_sleep(30) as longq-sleeping, but the admin declines the cancel.",
          params={"min_seconds": 1}, confirm={"cancel-long-queries": False}, verify=_sleep_left,
          expect_path=["long-queries", "cancel-long-queries", "left-running"],
          roles={"postgres": ["long-queries", "cancel-long-queries", "left-running"], "plain": ["long-queries", "timeouts", "no-visibility"]})
def _declined(c: Cluster, h: Holder) -> None:
    _sleeping(c, h)


@scenario("longq-lock-wait", LONGQ,
          "`migrate` holds ACCESS EXCLUSIVE on `orders` in an open transaction; `report`'s SELECT waits behind it.",
          params={"min_seconds": 1}, expect_path=["long-queries", "waiting-on-locks"],
          roles={"postgres": ["long-queries", "waiting-on-locks"], "plain": ["long-queries", "timeouts", "no-visibility"]})
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
          params={"min_seconds": 1}, expect_path=["long-queries", "timeouts", "no-timeout"],
          roles={"postgres": ["long-queries", "timeouts", "no-timeout"], "plain": ["long-queries", "timeouts", "no-visibility"]})
def _no_timeout(c: Cluster, h: Holder) -> None:
    h.connect(user="app", app="web")


@scenario("longq-healthy", LONGQ,
          "Nothing runs long and role `app` has statement_timeout = 30s (ALTER ROLE).",
          expect_path=["long-queries", "timeouts", "none"],
          roles={"postgres": ["long-queries", "timeouts", "none"], "plain": ["long-queries", "timeouts", "no-visibility"]})
def _healthy(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE app SET statement_timeout = '30s'")
    h.connect(user="app", app="web")


# --- xid-wraparound ---------------------------------------------------------------------------------
XID = "xid-wraparound"
# A fresh cluster is a few hundred XIDs old, so the scenarios burn 1,000 XIDs (after creating whatever
# holds the horizon) and measure against thresholds of 500: age_pct and holder_pct 0.5 of
# autovacuum_freeze_max_age 100,000 (its minimum). Autovacuum workers that start meanwhile have young
# snapshots, and their xmin does not count anyway. Nothing reaches 100,000, so no anti-wraparound
# autovacuum starts while a scenario runs.
XID_SETTINGS = {"autovacuum_freeze_max_age": 100000}
XID_PARAMS = {"age_pct": 0.5, "holder_pct": 0.5}
# the path of a state whatever role looks at it: none of these needs more than every role can read
# (pg_database, pg_class, pg_prepared_xacts, pg_replication_slots, and the xmin of every session)
_HORIZON = ["databases", "horizon"]
_TABLES = ["databases", "horizon", "oldest-tables"]
_KEPT = ["databases", "horizon", "terminate-holders", "holders-kept", "long-transaction"]


def _same(path: list[str]) -> dict[str, list[str]]:
    return {"postgres": path, "plain": path}


def _burn_xids(c: Cluster, n: int = 1000) -> None:
    """Consume `n` transaction IDs: txid_current() in a DO block that commits after each."""
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        conn.execute(f"DO $$ BEGIN FOR i IN 1..{int(n)} LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$")


def _freeze(c: Cluster, *dbnames: str) -> None:
    """A database-wide VACUUM (FREEZE) in each database (scenario setup: make them young)."""
    for db in dbnames:
        c.sql("VACUUM (FREEZE)", dbname=db)


def _snapshot(h: Holder, app: str, dbname: str = "postgres") -> psycopg.Connection:
    """A session of `app` holding a REPEATABLE READ snapshot and an XID, left idle in its transaction."""
    conn = h.connect(user="app", dbname=dbname, app=app, autocommit=False)
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT txid_current()")  # assigns an XID; the snapshot was taken by this first query
    return conn


@scenario("xid-healthy", XID, "A fresh cluster with default thresholds: nothing is old.",
          expect_path=["databases", "healthy"],
          roles={"postgres": ["databases", "healthy"], "plain": ["databases", "not-behind-hidden"]})
def _xid_healthy(c: Cluster, h: Holder) -> None:
    h.connect(user="app", app="web")


@scenario("xid-hidden-sessions", XID,
          "The same fresh cluster, diagnosed as `plain`: other roles' sessions show no type, state or start.",
          target_user="plain", expect_path=["databases", "not-behind-hidden"],
          expect_verdict="GRANT pg_monitor (or pg_read_all_stats) to plain",
          roles={"postgres": ["databases", "healthy"], "monitor": ["databases", "healthy"]})
def _xid_hidden(c: Cluster, h: Holder) -> None:
    h.connect(user="app", app="web")


@scenario("xid-prepared-transaction", XID,
          "A transaction PREPAREd as 'batch-42' and never committed, 1,000 XIDs ago.",
          settings={**XID_SETTINGS, "max_prepared_transactions": 5}, params=XID_PARAMS,
          expect_path=_HORIZON + ["prepared-transaction"],
          expect_verdict="Prepared transaction batch-42 (owner app, database postgres)",
          roles=_same(_HORIZON + ["prepared-transaction"]))
def _xid_prepared(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.ledger (id int PRIMARY KEY, amount int)")
    c.sql("GRANT ALL ON public.ledger TO app")
    conn = h.connect(user="app", app="billing", autocommit=False)
    conn.execute("INSERT INTO public.ledger VALUES (1, 100)")
    conn.execute("PREPARE TRANSACTION 'batch-42'")
    conn.commit()  # ends psycopg's view of the transaction; the prepared one stays on the server
    _burn_xids(c)


def _holder_gone(c: Cluster, h: Holder) -> None:
    assert _wait_until(lambda: c.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reporting'")[0][0] == 0), \
        "the reporting session is still there"


@scenario("xid-long-transaction", XID,
          "Application `reporting` holds a REPEATABLE READ transaction with an XID and a snapshot; "
          "1,000 XIDs pass; the admin terminates it.",
          settings=XID_SETTINGS, params=XID_PARAMS, confirm={"terminate-holders": True}, verify=_holder_gone,
          expect_path=_HORIZON + ["terminate-holders", "horizon-released"],
          expect_verdict="session(s) of postgres whose xmin held its horizon back",
          roles=_same(_KEPT))
def _xid_long_tx(c: Cluster, h: Holder) -> None:
    _snapshot(h, "reporting")
    _burn_xids(c)


@scenario("xid-long-transaction-kept", XID,
          "Same REPEATABLE READ transaction as xid-long-transaction; the admin declines to terminate it.",
          settings=XID_SETTINGS, params=XID_PARAMS, confirm={"terminate-holders": False},
          expect_path=_KEPT, expect_verdict="(reporting, role app, idle in transaction)",
          roles=_same(_KEPT))
def _xid_long_tx_kept(c: Cluster, h: Holder) -> None:
    _xid_long_tx(c, h)


@scenario("xid-holder-past-threshold", XID,
          "Application `etl` holds a snapshot while 60,000 XIDs pass, far below a fixed million but 60% of "
          "autovacuum_freeze_max_age (100,000); holder_pct is left at its default of 50%.",
          settings=XID_SETTINGS, params={"age_pct": 0.5}, confirm={"terminate-holders": False},
          expect_path=_KEPT, expect_verdict="past 50000 (50% of autovacuum_freeze_max_age 100000)",
          roles=_same(_KEPT))
def _xid_holder_past(c: Cluster, h: Holder) -> None:
    _snapshot(h, "etl")
    _burn_xids(c, 60000)


@scenario("xid-holder-below-threshold", XID,
          "60,000 XIDs pass, then application `etl` opens a snapshot and 1,000 more pass: its xmin is "
          "1,000 XIDs old, below 50% of autovacuum_freeze_max_age, so the old tables are what matters.",
          settings=XID_SETTINGS, params={"age_pct": 0.5},
          expect_path=_TABLES + ["vacuum-oldest"], expect_verdict="Nothing holds postgres's own tables back",
          roles=_same(_TABLES + ["vacuum-oldest"]))
def _xid_holder_below(c: Cluster, h: Holder) -> None:
    _burn_xids(c, 60000)
    _snapshot(h, "etl")
    _burn_xids(c)


@scenario("xid-session-other-database", XID,
          "1,000 XIDs pass and `shop` and template1 are frozen; then application `reporting` holds a snapshot "
          "in `shop` while 700 more pass. `postgres` (kb's database) is the oldest; the session in `shop` "
          "does not hold its tables back.",
          settings=XID_SETTINGS, params=XID_PARAMS,
          expect_path=_TABLES + ["vacuum-oldest"], expect_verdict="Nothing holds postgres's own tables back",
          roles=_same(_TABLES + ["vacuum-oldest"]))
def _xid_other_db_session(c: Cluster, h: Holder) -> None:
    _burn_xids(c)
    _freeze(c, "shop", "template1")
    _snapshot(h, "reporting", dbname="shop")
    _burn_xids(c, 700)


@scenario("xid-shared-catalogs", XID,
          "Application `reporting` holds a snapshot in `shop` while 700 XIDs pass, then every database is "
          "frozen: the tables of `postgres` are young, but its shared catalogs stay held back by that session.",
          settings=XID_SETTINGS, params=XID_PARAMS,
          expect_path=_TABLES + ["shared-catalogs"], expect_verdict="(reporting, role app) in database shop",
          roles=_same(_TABLES + ["shared-catalogs"]))
def _xid_shared_catalogs(c: Cluster, h: Holder) -> None:
    _burn_xids(c, 300)
    _freeze(c, "shop", "template1")
    _snapshot(h, "reporting", dbname="shop")
    _burn_xids(c, 700)
    _freeze(c, "postgres", "shop", "template1")


@scenario("xid-temp-table", XID,
          "Application `importer` created the temporary table `staging` and stays connected, idle; 1,000 XIDs "
          "pass and every database is frozen, which skips other sessions' temporary tables.",
          settings=XID_SETTINGS, params=XID_PARAMS,
          expect_path=_TABLES + ["temp-table"], expect_verdict="(importer, role app)",
          roles=_same(_TABLES + ["temp-table"]))
def _xid_temp_table(c: Cluster, h: Holder) -> None:
    conn = h.connect(user="app", app="importer")
    conn.execute("CREATE TEMP TABLE staging (id int, qty int)")
    conn.execute("INSERT INTO staging VALUES (1, 10)")
    _burn_xids(c)
    _freeze(c, "postgres", "shop", "template1")


@scenario("xid-logical-slot", XID,
          "A logical replication slot (test_decoding) nobody consumes; its catalog_xmin stays 1,000 XIDs behind.",
          settings={**XID_SETTINGS, "wal_level": "logical"}, params=XID_PARAMS,
          expect_path=_HORIZON + ["replication-slot"], expect_verdict="replication slot cdc_orders (logical, inactive)",
          roles=_same(_HORIZON + ["replication-slot"]))
def _xid_slot(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_logical_replication_slot('cdc_orders', 'test_decoding')")
    _burn_xids(c)


@scenario("xid-autovacuum-off", XID, "autovacuum = off and 1,000 XIDs consumed; nothing holds the horizon.",
          settings={**XID_SETTINGS, "autovacuum": "off"}, params=XID_PARAMS,
          expect_path=_TABLES + ["autovacuum-off"], roles=_same(_TABLES + ["autovacuum-off"]))
def _xid_autovacuum_off(c: Cluster, h: Holder) -> None:
    _burn_xids(c)


@scenario("xid-table-autovacuum-disabled", XID,
          "Table `audit_log` has autovacuum_enabled = false; every other table, and every other database, "
          "was frozen since, 1,000 XIDs later.",
          settings=XID_SETTINGS, params=XID_PARAMS,
          expect_path=_TABLES + ["table-autovacuum-disabled"], expect_verdict="audit_log, has autovacuum_enabled = false",
          roles=_same(_TABLES + ["table-autovacuum-disabled"]))
def _xid_table_av_off(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.audit_log (id bigint, line text) WITH (autovacuum_enabled = false)")
    _burn_xids(c)
    tables = c.sql("SELECT oid::regclass::text FROM pg_class WHERE relkind IN ('r', 'm')"
                   " AND oid <> 'public.audit_log'::regclass")
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        for (t,) in tables:
            conn.execute(f"VACUUM (FREEZE) {t}")
    _freeze(c, "shop", "template1")


@scenario("xid-other-database", XID,
          "1,000 XIDs consumed, then every table of `postgres` (kb's database) frozen; `shop` and template1 stay old.",
          settings=XID_SETTINGS, params=XID_PARAMS,
          expect_path=_TABLES + ["other-database"], expect_verdict="the oldest database, shop,",
          roles=_same(_TABLES + ["other-database"]))
def _xid_other_db(c: Cluster, h: Holder) -> None:
    _burn_xids(c)
    _freeze(c, "postgres")


@scenario("xid-vacuum-behind", XID, "1,000 XIDs consumed, autovacuum on, nothing holds the horizon.",
          settings=XID_SETTINGS, params=XID_PARAMS,
          expect_path=_TABLES + ["vacuum-oldest"], roles=_same(_TABLES + ["vacuum-oldest"]))
def _xid_vacuum_behind(c: Cluster, h: Holder) -> None:
    _burn_xids(c)


@scenario("xid-multixact", XID,
          "Application `batch` keeps a FOR SHARE lock on a row of `stock` open while 150 other transactions "
          "share-lock it too, each making a new MultiXact ID; autovacuum_multixact_freeze_max_age is 10,000 "
          "(its minimum) and age_pct 0.5, so 150 is past 50.",
          settings={"autovacuum_multixact_freeze_max_age": 10000}, params={"age_pct": 0.5},
          expect_path=["databases", "multixacts", "multixact-wraparound"],
          expect_verdict="(batch, role app, database postgres",
          roles=_same(["databases", "multixacts", "multixact-wraparound"]))
def _xid_multixact(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.stock (id int PRIMARY KEY, qty int)")
    c.sql("INSERT INTO public.stock VALUES (1, 10)")
    c.sql("GRANT ALL ON public.stock TO app")
    batch = h.connect(user="app", app="batch", autocommit=False)
    batch.execute("SELECT * FROM public.stock WHERE id = 1 FOR SHARE")  # stays open: a member of every multixact
    other = h.connect(user="app", app="picker", autocommit=False)
    for _ in range(150):
        other.execute("SELECT * FROM public.stock WHERE id = 1 FOR SHARE")
        other.commit()


# --- lock-table-exhaustion --------------------------------------------------------------------------
LOCKS = "lock-table-exhaustion"
# A small lock table: 64 x (10 connections + 1 autovacuum worker + 1 launcher + 0 background workers
# + 0 WAL senders) = 768 slots (the server still finds about 1,150 before "out of shared memory").
LOCK_SETTINGS = {"max_connections": 10, "max_locks_per_transaction": 64, "max_worker_processes": 0,
                 "max_wal_senders": 0, "autovacuum_max_workers": 1}


def _create_tables(conn: psycopg.Connection, prefix: str, n: int, schema: str = "public", start: int = 0) -> None:
    """n tables with a primary key: two locks each (table and index) while the transaction is open."""
    for i in range(start, start + n):
        conn.execute(f"CREATE TABLE {schema}.{prefix}_{i:03d} (id int PRIMARY KEY)")


def _create_partitioned(c: Cluster, name: str, partitions: int) -> None:
    with psycopg.connect(c.dsn(), autocommit=False) as conn:
        conn.execute(f"CREATE TABLE public.{name} (tenant int NOT NULL, id bigint NOT NULL, body text,"
                     f" PRIMARY KEY (tenant, id)) PARTITION BY LIST (tenant)")
        for i in range(partitions):
            conn.execute(f"CREATE TABLE public.{name}_{i:03d} PARTITION OF public.{name} FOR VALUES IN ({i})")
            if i % 50 == 49:  # each partition takes four locks here (table, key, TOAST table and index):
                conn.commit()  # all in one transaction would come near the lock table's size
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO app")


@scenario("locktable-many-tables", LOCKS,
          "A migration (`migrate`) creates 300 tables with primary keys in one transaction and has not committed.",
          settings=LOCK_SETTINGS, expect_path=["usage", "holders", "many-locks"],
          roles={"postgres": ["usage", "holders", "many-locks"], "plain": ["usage", "holders", "many-locks"]})
def _lt_many_tables(c: Cluster, h: Holder) -> None:
    c.sql("CREATE SCHEMA staging AUTHORIZATION app")
    conn = h.connect(user="app", app="migrate", autocommit=False)
    _create_tables(conn, "import", 300, schema="staging")


@scenario("locktable-partitions", LOCKS,
          "`events` has 300 list partitions; `report` ran SELECT count(*) FROM events in a transaction still open.",
          settings=LOCK_SETTINGS, expect_path=["usage", "holders", "partition-scan"],
          roles={"postgres": ["usage", "holders", "partition-scan"], "plain": ["usage", "holders", "partition-scan"]})
def _lt_partitions(c: Cluster, h: Holder) -> None:
    _create_partitioned(c, "events", 300)
    conn = h.connect(user="app", app="report", autocommit=False)
    conn.execute("SELECT count(*) FROM public.events")


@scenario("locktable-prepared", LOCKS,
          "A transaction created 300 tables and was PREPAREd as 'deploy-7' but never committed.",
          settings={**LOCK_SETTINGS, "max_prepared_transactions": 2}, expect_path=["usage", "holders", "prepared-holds-locks"],
          roles={"postgres": ["usage", "holders", "prepared-holds-locks"], "plain": ["usage", "holders", "prepared-holds-locks"]})
def _lt_prepared(c: Cluster, h: Holder) -> None:
    c.sql("CREATE SCHEMA staging AUTHORIZATION app")
    conn = h.connect(user="app", app="deploy", autocommit=False)
    _create_tables(conn, "deploy", 300, schema="staging")
    conn.execute("PREPARE TRANSACTION 'deploy-7'")
    conn.commit()


@scenario("locktable-spread", LOCKS,
          "Six `worker` sessions each hold ACCESS EXCLUSIVE locks on 60 different tables (under 64 each).",
          # 6 workers leave one usable slot: one more, so a step's new connection never races the exit
          # of the previous step's
          settings={**LOCK_SETTINGS, "superuser_reserved_connections": 2}, params={"high_pct": 40},
          expect_path=["usage", "holders", "raise-max-locks"],
          roles={"postgres": ["usage", "holders", "raise-max-locks"], "plain": ["usage", "holders", "raise-max-locks"]})
def _lt_spread(c: Cluster, h: Holder) -> None:
    c.sql("CREATE SCHEMA work AUTHORIZATION app")
    with psycopg.connect(c.dsn("app"), autocommit=False) as conn:
        for batch in range(0, 360, 120):  # commit in batches: 360 tables at once would fill the table
            _create_tables(conn, "job", 120, schema="work", start=batch)
            conn.commit()
    for w in range(6):
        conn = h.connect(user="app", app="worker", autocommit=False)
        tables = ", ".join(f"work.job_{i:03d}" for i in range(w * 60, w * 60 + 60))
        conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")


@scenario("locktable-partition-risk", LOCKS,
          "Nothing holds locks now, but `events` has 100 partitions with a primary key each.",
          settings=LOCK_SETTINGS, expect_path=["usage", "partition-risk", "partition-risk-found"],
          roles={"postgres": ["usage", "partition-risk", "partition-risk-found"], "plain": ["usage", "partition-risk", "partition-risk-found"]})
def _lt_partition_risk(c: Cluster, h: Holder) -> None:
    _create_partitioned(c, "events", 100)
    h.connect(user="app", app="web")


@scenario("locktable-full", LOCKS,
          "A leaking job (`leaky`) took session advisory locks until the server said out of shared memory.",
          settings={**LOCK_SETTINGS, "autovacuum": "off"}, expect_path=["usage", "table-full"],
          roles={"postgres": ["usage", "table-full"], "plain": ["usage", "table-full"]})
def _lt_full(c: Cluster, h: Holder) -> None:
    # autovacuum off: no worker may release a lock entry between the fill and kb's connection
    conn = h.connect(user="app", app="leaky")
    for i in range(100000):
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (i,))
        except psycopg.errors.OutOfMemory:
            return
    raise AssertionError("the lock table never filled up")


@scenario("locktable-healthy", LOCKS, "A quiet server with a few small tables.",
          settings=LOCK_SETTINGS, expect_path=["usage", "partition-risk", "fine"],
          roles={"postgres": ["usage", "partition-risk", "fine"], "plain": ["usage", "partition-risk", "fine-unseen"]})
def _lt_healthy(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.orders (id int PRIMARY KEY)")
    h.connect(user="app", app="web")
