"""The SQL guard: a diagnostic is one read-only statement, proved by PostgreSQL's own parser before
anything runs. Each attack below is refused by `kb check` (the runbook loader) and by the executor,
which is given it as a superuser against a real cluster; the cluster is unchanged afterwards."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from kb.runbooks import sqlguard
from kb.runbooks.executor import Executor, Timeouts
from kb.runbooks.loader import load_runbooks
from kb.runbooks.targets import Target

MARK = "/tmp/kb-sqlguard-was-here"

ATTACKS = {
    "commit then write": "SELECT 1; COMMIT; UPDATE public.items SET name = 'x' WHERE id = 1",
    "second statement": "SELECT 1; INSERT INTO public.items VALUES (9001, 'x')",
    "commit then sleep": "COMMIT; SELECT pg_sleep(60)",
    "read-write switch": "SET TRANSACTION READ WRITE",
    "plain update": "UPDATE public.items SET name = 'x' WHERE id = 1",
    "cte delete": "WITH d AS (DELETE FROM public.items WHERE id = 1 RETURNING id) SELECT count(*) FROM d",
    "cte insert": "WITH i AS (INSERT INTO public.items VALUES (9002, 'x') RETURNING id) SELECT * FROM i",
    "select into": "SELECT 1 AS a INTO public.pwned",
    "create table as": "CREATE TABLE public.pwned AS SELECT 1 AS a",
    "row locks": "SELECT id FROM public.items WHERE id = 1 FOR UPDATE",
    "catalog row locks": "SELECT oid FROM pg_catalog.pg_class LIMIT 1 FOR SHARE",
    "explain analyze": "EXPLAIN ANALYZE DELETE FROM public.items",
    "explain (analyze)": "EXPLAIN (ANALYZE, BUFFERS) UPDATE public.items SET name = 'x'",
    "terminate": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "cancel": "SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity",
    "advisory lock": "SELECT pg_advisory_lock(42)",
    "advisory xact lock": "SELECT pg_try_advisory_xact_lock(42)",
    "reload config": "SELECT pg_reload_conf()",
    "reset statistics": "SELECT pg_stat_reset()",
    "switch wal": "SELECT pg_switch_wal()",
    "read a file": "SELECT pg_read_file('/etc/passwd')",
    "list a directory": "SELECT pg_ls_dir('/')",
    "export a large object": f"SELECT lo_export(0, '{MARK}')",
    "sql in a string": "SELECT query_to_xml('DELETE FROM public.items RETURNING 1', true, false, '')",
    "set_config": "SELECT set_config('default_transaction_read_only', 'off', false)",
    "sequence": "SELECT nextval('pg_catalog.some_seq')",
    "xid": "SELECT txid_current()",
    "notify function": "SELECT pg_notify('c', 'x')",
    "notify": "NOTIFY c",
    "listen": "LISTEN c",
    "copy to program": f"COPY (SELECT 1) TO PROGRAM 'touch {MARK}'",
    "copy to file": f"COPY public.items TO '{MARK}'",
    "do block": "DO $$ BEGIN PERFORM pg_sleep(0); END $$",
    "call": "CALL public.cleanup()",
    "user function": "SELECT public.count(*) FROM pg_class",
    "user schema function": "SELECT app.helper()",
    "user operator": "SELECT 1 OPERATOR(public.+) 1",
    "user view": "SELECT * FROM public.items",
    "user table unqualified": "SELECT * FROM items",
    "dblink": "SELECT dblink_exec('dbname=postgres', 'DROP TABLE public.items')",
    "vacuum": "VACUUM public.items",
    "lock table": "LOCK TABLE public.items",
    "prepare": "PREPARE p AS DELETE FROM public.items",
    "create function": "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "grant": "GRANT ALL ON public.items TO app",
    "alter system": "ALTER SYSTEM SET work_mem = '1GB'",
    "set": "SET statement_timeout = 0",
    "reset": "RESET ALL",
    "discard": "DISCARD ALL",
    "checkpoint": "CHECKPOINT",
    "truncate": "TRUNCATE public.items",
    "comment hides a statement": "SELECT 1 /* ; */ ; DELETE FROM public.items",
    "empty": "   ",
    "garbage": "SELEKT 1",
}


def test_there_are_many_attacks():
    assert len(ATTACKS) >= 30


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_guard_refuses(name):
    with pytest.raises(sqlguard.Refused):
        sqlguard.check(ATTACKS[name], "diagnostic")


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "SELECT pid, state, now() - xact_start AS age FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT count(*) FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation",
    "WITH w AS (SELECT pid FROM pg_stat_activity) SELECT count(*) FROM w",
    "SELECT setting::int FROM pg_settings WHERE name = %(name)s",
    "SELECT name FROM pg_settings WHERE name LIKE 'max%%'",
    "SHOW max_connections",
    "EXPLAIN SELECT * FROM pg_class",
    "SELECT table_name FROM information_schema.tables LIMIT 3",
    "SELECT pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(current_database()))",
    "SELECT 1 OPERATOR(pg_catalog.+) 1",
    "VALUES (1), (2)",
    "SELECT pg_sleep(0.01)",
])
def test_the_guard_allows_read_only_diagnostics(sql):
    sqlguard.check(sql, "diagnostic")


def test_pgbouncer_steps_may_only_show():
    sqlguard.check("SHOW POOLS", "diagnostic", "pgbouncer")
    for sql in ("SELECT 1", "PAUSE", "KILL app", "SHOW POOLS; SHUTDOWN", "RELOAD"):
        with pytest.raises(sqlguard.Refused):
            sqlguard.check(sql, "diagnostic", "pgbouncer")


def test_an_action_is_still_one_statement():
    sqlguard.check("SELECT pg_terminate_backend(%(pid)s)", "action")
    with pytest.raises(sqlguard.Refused, match="exactly one"):
        sqlguard.check("SELECT pg_terminate_backend(1); DROP TABLE public.items", "action")


RUNBOOK = """\
id: attack
title: Attack
summary: A diagnostic that must not load.
start: look
steps:
  look:
    kind: diagnostic
    title: Look
    sql: {sql}
    branches:
      - otherwise: true
        goto: done
  done: {{kind: conclusion, outcome: healthy, title: Done, verdict: Done., status: ok}}
"""


@pytest.mark.parametrize("name", [n for n in ATTACKS if ATTACKS[n].strip()])
def test_kb_check_refuses_a_runbook_with_the_attack(tmp_path, name):
    import json

    (tmp_path / "attack.yaml").write_text(RUNBOOK.format(sql=json.dumps(ATTACKS[name])))
    runbooks, problems = load_runbooks(tmp_path)
    assert "attack" not in runbooks
    where = [(p.field, p.line) for p in problems if p.level == "error"]
    assert ("steps.look.sql", 9) in where, problems


def _state(pg) -> dict:
    return {
        "items": pg.sql("SELECT count(*), min(name) FROM public.items"),
        "advisory": pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        "tables": pg.sql("SELECT count(*) FROM pg_class WHERE relname = 'pwned'"),
        "work_mem": pg.sql("SELECT setting FROM pg_settings WHERE name = 'work_mem'"),
    }


@pytest.fixture(scope="module")
def superuser_executor(pg):
    ex = Executor({"t": Target("t", dsn=pg.dsn("postgres"))}, Timeouts(statement_ms=2000), busy_timeout=5,
                  idle_seconds=0)
    yield ex
    ex.close()


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_executor_refuses_the_attack_as_superuser(superuser_executor, pg, name):
    bystander = psycopg.connect(pg.dsn("postgres"), autocommit=True)
    try:
        before = _state(pg)
        with pytest.raises(sqlguard.Refused):
            superuser_executor.run("t", None, {"name": "x"}, sql=ATTACKS[name])
        assert _state(pg) == before
        assert bystander.execute("SELECT 1").fetchone() == (1,)
        assert not Path(MARK).exists()
    finally:
        bystander.close()


def test_the_server_itself_refuses_two_statements_in_one_step(superuser_executor, pg):
    """Below the guard: steps go through the extended protocol, which carries one statement only."""
    with superuser_executor.pools["t"].connection(5) as conn:
        with pytest.raises(psycopg.errors.SyntaxError, match="multiple commands"):
            superuser_executor._in_transaction(conn, "SELECT 1; UPDATE public.items SET name = 'x'", {},
                                               False, None, "kb test")
    assert pg.sql("SELECT count(*) FROM public.items WHERE name = 'x'")[0][0] == 0


def test_a_write_that_got_past_the_guard_meets_a_read_only_transaction(superuser_executor, pg):
    with superuser_executor.pools["t"].connection(5) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            superuser_executor._in_transaction(conn, "UPDATE public.items SET name = 'changed' WHERE id = 1", {},
                                               False, None, "kb test")
    assert pg.sql("SELECT name FROM public.items WHERE id = 1")[0][0] == "item 1"


def test_a_refused_step_is_a_classified_outcome(make_service_for_guard):
    svc, runbooks_dir = make_service_for_guard
    run = svc.runs.start("probe-sleep", "t", {"seconds": 0}, _operator(), auto=True)
    assert run["status"] == "finished"
    # whatever changes a loaded step (a future reload, a bug), the executor checks again
    step = svc.runs.catalog.runbooks["probe-sleep"].steps["sleep"]
    object.__setattr__(step, "sql", "SELECT pg_terminate_backend(pg_backend_pid()) AS slept")
    run = svc.runs.start("probe-sleep", "t", {"seconds": 0}, _operator(), auto=True)
    err = run["steps"][0]["error"]
    assert err["condition"] == "refused_sql" and err["phase"] == "check"
    assert "pg_terminate_backend" in err["message"]


def _operator():
    from kb.web.auth import Identity

    return Identity("op", "operator", "token")


@pytest.fixture
def make_service_for_guard(config_factory, runbooks_dir, pg):
    from kb.service import Service

    svc = Service.from_config(config_factory(runbooks_dir=str(runbooks_dir),
                                             targets={"t": {"dsn": pg.dsn("postgres")}}))
    yield svc, runbooks_dir
    svc.runs.close()


def test_the_shipped_refused_example_names_its_line_and_rule():
    root = Path(__file__).parent / "fixtures" / "refused"
    runbooks, problems = load_runbooks(root)
    assert runbooks == {}
    [p] = [p for p in problems if p.level == "error"]
    assert (p.field, p.line) == ("steps.write.sql", 9)
    assert "a diagnostic must be a SELECT, SHOW or EXPLAIN, not Update (UPDATE ...)" in p.reason
