"""The runbook engine against a real cluster: read-only steps, timeouts, lock waits, dead servers,
bound parameters, the per-target connection cap, row caps, and both run stores."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from kb.scenarios.cluster import Cluster, free_port
from kb.service import Service
from kb.web.auth import Identity

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = Identity("op", "operator", "token")


@pytest.fixture
def make_service(config_factory, runbooks_dir, pg, store_url):
    made = []

    def make(dsn=None, **kw):
        targets = {"t": {"dsn": dsn or pg.dsn("monitor"), "cap": kw.pop("cap", 1)}}
        svc = Service.from_config(config_factory(runbooks_dir=str(runbooks_dir), targets=targets,
                                                 store_url=store_url, **kw))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.runs.close()


def finish(svc, runbook, params=None):
    run = svc.runs.start(runbook, "t", params or {}, OPERATOR, auto=True)
    assert run["status"] == "finished", run["summary"]
    return run


def test_statement_timeout_gives_query_canceled(make_service):
    svc = make_service(statement_timeout_ms=300)
    t0 = time.monotonic()
    run = finish(svc, "probe-sleep", {"seconds": 5})
    assert time.monotonic() - t0 < 3
    err = run["steps"][0]["error"]
    assert (err["sqlstate"], err["condition"]) == ("57014", "query_canceled")
    assert "statement timeout" in err["message"]
    assert err["entry"]["slug"] == "statement-timeout"
    assert run["conclusion"]["step_id"] == "canceled"


def test_lock_wait_gives_lock_timeout(make_service, pg):
    holder = psycopg.connect(pg.dsn("postgres"))
    try:
        holder.execute("LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE")
        svc = make_service(lock_timeout_ms=200)
        t0 = time.monotonic()
        run = finish(svc, "probe-lock")
        assert time.monotonic() - t0 < 3
        err = run["steps"][0]["error"]
        assert (err["sqlstate"], err["condition"]) == ("55P03", "lock_not_available")
        assert err["entry"]["slug"] == "lock-timeout"
        assert run["conclusion"]["step_id"] == "lock-timeout"
    finally:
        holder.close()


def test_stopped_server_gives_connection_failure_within_the_connect_timeout(make_service):
    c = Cluster(settings={"max_connections": 5}).start()
    dsn = c.dsn("postgres")
    c.destroy()
    svc = make_service(dsn=dsn, connect_timeout=2)
    t0 = time.monotonic()
    run = finish(svc, "probe-lock")
    assert time.monotonic() - t0 < 3
    err = run["steps"][0]["error"]
    assert err["condition"] == "connection_failure" and err["phase"] == "connect"
    assert "Connection refused" in err["message"]
    assert run["conclusion"]["step_id"] == "no-server"


def test_unroutable_server_times_out_within_the_connect_timeout(make_service):
    # a listening socket that never answers the startup packet
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        svc = make_service(dsn=f"host=127.0.0.1 port={s.getsockname()[1]} user=x dbname=x", connect_timeout=2)
        t0 = time.monotonic()
        run = finish(svc, "probe-lock")
        assert time.monotonic() - t0 < 4
        assert run["steps"][0]["error"]["condition"] == "connection_failure"
    finally:
        s.close()


@pytest.mark.parametrize("payload", [
    "x'; DROP TABLE public.items; --",
    "%(name)s",
    "'); SELECT pg_terminate_backend(pg_backend_pid()); --",
    "$$ || (SELECT 1) || $$",
])
def test_parameters_are_bound_not_formatted(make_service, pg, payload):
    run = finish(make_service(), "probe-param", {"name": payload})
    assert run["steps"][0]["rows"][0][0] == payload
    assert pg.sql("SELECT count(*) FROM public.items")[0][0] == 500


def test_parameter_bounds_are_enforced(make_service):
    from kb.errors import BadRequest

    svc = make_service()
    with pytest.raises(BadRequest) as exc:
        svc.runs.start("probe-param", "t", {"limit_n": 9999, "bogus": 1, "name": "y" * 300}, OPERATOR)
    assert sorted(e["field"] for e in exc.value.errors) == ["params.bogus", "params.limit_n", "params.name"]


def test_rows_are_capped_and_the_cap_is_said(make_service):
    svc = make_service(max_rows=50)
    run = finish(svc, "probe-param", {"limit_n": 120})
    step = run["steps"][1]
    assert step["row_count"] == 120 and len(step["rows"]) == 50 and step["truncated"] is True
    assert "kept 50 of 120 rows" in step["summary"]
    assert "Rows capped: kept 50 of 120" in svc.runs.transcript(run["id"], OPERATOR)


def test_concurrent_runs_never_exceed_the_connection_cap(make_service, pg):
    from kb.scenarios import ConnectionWatch

    svc = make_service(busy_timeout=60, target_idle_seconds=0.5)
    results, errors = [], []

    def one():
        try:
            results.append(svc.runs.start("probe-sleep", "t", {"seconds": 0.05}, OPERATOR, auto=True))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    with ConnectionWatch(pg.dsn("postgres")) as watch:
        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(results) == 20 and all(r["conclusion"]["step_id"] == "done" for r in results)
    assert 1 <= watch.peak <= 1
    assert svc.runs.store.recent(50) and len({r["id"] for r in results}) == 20


def test_busy_outcome_when_the_cap_is_held_too_long(make_service):
    svc = make_service(busy_timeout=0.3)
    first = threading.Thread(target=lambda: svc.runs.start("probe-sleep", "t", {"seconds": 1.5}, OPERATOR, auto=True))
    first.start()
    time.sleep(0.3)
    run = finish(svc, "probe-sleep", {"seconds": 0})
    first.join()
    assert run["steps"][0]["error"]["condition"] == "busy"
    assert run["conclusion"]["step_id"] == "busy"


def test_nothing_is_left_open_after_a_step(make_service, pg):
    svc = make_service(target_idle_seconds=0)
    finish(svc, "probe-param")
    n = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'kb%'")[0][0]
    assert n == 0


def test_every_statement_is_recorded_with_who_ran_it(make_service):
    svc = make_service()
    run = finish(svc, "probe-param", {"name": "abc"})
    assert [s["sql"].split()[0] for s in run["steps"] if s["kind"] == "diagnostic"] == ["SELECT", "SELECT"]
    assert all(s["actor"] == "op" for s in run["steps"] if s["kind"] == "diagnostic")
    events = [a["event"] for a in svc.runs.audit(run["id"], OPERATOR)]
    assert events[0] == "start" and events[-1] == "conclude"


def test_credentials_never_leave_the_server(make_service, pg):
    pg.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'secretive') THEN "
           "CREATE ROLE secretive LOGIN PASSWORD 'hunter2-very-secret'; END IF; END $$")
    svc = make_service(dsn=f"postgresql://secretive:hunter2-very-secret@127.0.0.1:{free_port()}/postgres")
    run = finish(svc, "probe-lock")
    import json

    blob = json.dumps(run) + svc.runs.transcript(run["id"], OPERATOR) + json.dumps(svc.runs.targets_for(OPERATOR))
    assert "hunter2" not in blob
    assert run["steps"][0]["error"]["condition"] == "connection_failure"


def test_a_question_loop_stops_at_the_step_limit(make_service):
    svc = make_service(max_steps=5)
    run = svc.runs.start("probe-loop", "t", {}, OPERATOR, auto=True)
    while run["status"] == "active":
        run = svc.runs.advance(run["id"], OPERATOR, answer="yes", auto=True)
    assert run["status"] == "stopped"
    assert run["summary"] == "Stopped: step limit of 5 reached"
    assert sum(s["kind"] in ("diagnostic", "question") for s in run["steps"]) == 5


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_sandbox_starts_a_scenario_and_removes_its_cluster_when_stopped(signame):
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "kb", "sandbox", "connections-many-idle"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C" not in out and time.monotonic() < deadline:
            out += proc.stdout.readline()
        assert "[targets.sandbox]" in out and "kb run connection-exhaustion --target sandbox" in out
        dsn = out.split('dsn = "')[1].split('"')[0]
        with psycopg.connect(dsn) as conn:
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'worker'").fetchone()[0]
            postmaster = conn.execute("SELECT pg_postmaster_start_time() IS NOT NULL").fetchone()[0]
        assert n == 6 and postmaster
    finally:
        proc.send_signal(getattr(signal, signame))
        proc.wait(timeout=30)
        proc.stdout.close()
    datadir = out.split("PostgreSQL in ")[1].split(")")[0]
    assert not os.path.exists(datadir)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()


def test_a_pooled_connection_ended_while_idle_is_not_the_next_steps_failure(make_service, pg):
    svc = make_service(target_idle_seconds=30)
    finish(svc, "probe-param")
    pids = pg.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'kb' AND state = 'idle'")
    assert pids, "the step's connection stays pooled"
    for (pid,) in pids:
        pg.sql("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    run = finish(svc, "probe-param")
    assert all(s["error"] is None for s in run["steps"]), run["steps"]


def test_a_huge_result_is_counted_not_held(pg):
    """100,000 rows of 1 KB: the executor keeps its first `keep_rows` and counts the rest, so memory
    stays near the kept rows instead of the whole result (about 400 MB before)."""
    import tracemalloc

    from kb.runbooks.executor import Executor, Timeouts
    from kb.runbooks.targets import Target

    ex = Executor({"t": Target("t", dsn=pg.dsn("monitor"))}, Timeouts(statement_ms=20000), busy_timeout=5,
                  idle_seconds=0, keep_rows=2000)
    try:
        tracemalloc.start()
        _, res = ex.run("t", None, {}, sql="SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 100000) AS g")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        ex.close()
    assert res.row_count == 100_000 and len(res.rows) == 2000
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MB"


ADMIN = Identity("root", "admin", "token")


def test_a_run_left_waiting_is_abandoned(make_service):
    """A run waiting for a confirmation longer than abandon_after ends as abandoned (inconclusive),
    is listed so, and can no longer be confirmed: what it previewed is that old."""
    from kb.errors import RunStateError

    svc = make_service(abandon_after=1.0)
    run = svc.runs.start("probe-action", "t", {}, ADMIN, auto=True)
    assert run["status"] == "active" and run["current"]["waiting_for"] == "confirm" and run["outcome"] is None
    time.sleep(1.3)
    listed = {r["id"]: r for r in svc.runs.recent(ADMIN)["runs"]}
    assert (listed[run["id"]]["status"], listed[run["id"]]["outcome"]) == ("abandoned", "inconclusive")
    seen = svc.runs.get(run["id"], ADMIN)
    assert seen["status"] == "abandoned" and seen["outcome"] == "inconclusive"
    assert seen["summary"].startswith("Abandoned: waited 1 s for a confirmation at step 'act'"), seen["summary"]
    with pytest.raises(RunStateError, match="abandoned"):
        svc.runs.advance(run["id"], ADMIN, confirm=True)
    assert [e["event"] for e in svc.runs.audit(run["id"], ADMIN)][-1] == "abandon"
    assert "Run abandoned (outcome: inconclusive)" in svc.runs.transcript(run["id"], ADMIN)
    # a run advanced in time is not abandoned
    fresh = svc.runs.start("probe-action", "t", {}, ADMIN, auto=True)
    done = svc.runs.advance(fresh["id"], ADMIN, confirm=False)
    assert done["status"] == "finished" and done["outcome"] == "healthy"


def test_every_conclusion_carries_its_outcome(make_service):
    svc = make_service(statement_timeout_ms=300)
    run = finish(svc, "probe-sleep", {"seconds": 5})
    assert run["conclusion"]["outcome"] == "problem" and run["outcome"] == "problem"
    assert run["summary"].startswith("Concluded (problem found): ")
    assert "**Outcome: problem found** (warning): " in svc.runs.transcript(run["id"], OPERATOR)
