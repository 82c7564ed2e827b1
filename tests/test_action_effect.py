"""A confirmed action says what it did in words, never more than its result shows; the command tag
stays in the record as `status_message`."""

from __future__ import annotations

import psycopg
import pytest

from kb.runbooks.effect import effect
from kb.runbooks.model import ActionStep
from kb.web.auth import Identity
from tests.test_engine import make_service  # noqa: F401 - the fixture
from tests.test_loader import problems, write_rb

ADMIN = Identity("root", "admin", "token")


def action(result=None, sql="SELECT pid, pg_terminate_backend(pid) AS terminated FROM x WHERE pid = ANY(%(preview_ids)s)"):
    data = {"kind": "action", "title": "Act", "preview_sql": "SELECT 1 AS pid", "sql": sql, "then": "a",
            "on_decline": "a"}
    if result is not None:
        data["result"] = result
    return ActionStep.model_validate(data)


TERMINATE = {"verb": "terminated", "noun": "session", "column": "terminated"}
SLOTS = {"verb": "dropped", "noun": "replication slot", "count": "dropped"}
QUERIES = {"verb": "cancelled", "noun": "query", "plural": "queries", "column": "cancelled"}


@pytest.mark.parametrize("result,columns,rows,status,previewed,expected", [
    (TERMINATE, ["pid", "terminated"], [[1, True]] * 6, "SELECT 6", 6, "terminated 6 sessions"),
    (TERMINATE, ["pid", "terminated"], [[1, True]], "SELECT 1", 1, "terminated 1 session"),
    (TERMINATE, ["pid", "terminated"], [[1, True]] * 5 + [[2, False]], "SELECT 6", 6, "terminated 5 of 6 sessions"),
    (TERMINATE, ["pid", "terminated"], [[1, True]] * 4, "SELECT 4", 6,
     "terminated 4 sessions; 2 of the 6 previewed no longer matched"),
    (TERMINATE, ["pid", "terminated"], [[1, True], [2, None]], "SELECT 2", 3,
     "terminated 1 of 2 sessions; 1 of the 3 previewed no longer matched"),
    (TERMINATE, ["pid", "terminated"], [], "SELECT 0", 2, "terminated 0 sessions; 2 of the 2 previewed no longer matched"),
    (QUERIES, ["pid", "cancelled"], [[1, True], [2, True]], "SELECT 2", 2, "cancelled 2 queries"),
    (SLOTS, ["dropped", "dropped_slots"], [[2, "a, b"]], "SELECT 1", 2, "dropped 2 replication slots"),
    (SLOTS, ["dropped", "dropped_slots"], [[1, "a"]], "SELECT 1", 2, "dropped 1 of the 2 previewed replication slots"),
    ({"verb": "reset", "noun": "counter"}, ["x"], [[1]] * 3, "SELECT 3", None, "reset 3 counters"),
    # the column the words need is not in the result: the command tag in words, nothing claimed
    (TERMINATE, ["pid", "ok"], [[1, True]], "SELECT 1", 1, "returned 1 row"),
    (None, ["pid", "terminated"], [[1, True]] * 6, "SELECT 6", 6, "returned 6 rows"),
    (None, [], [], "UPDATE 1", 1, "updated 1 row"),
    (None, [], [], "DELETE 3", 3, "deleted 3 rows"),
    (None, [], [], "INSERT 0 2", None, "inserted 2 rows"),
    (None, [], [], "VACUUM", None, "ran (VACUUM)"),
])
def test_effect_words(result, columns, rows, status, previewed, expected):
    assert effect(action(result), columns, rows, len(rows), status, previewed) == expected


ACTION_RB = """id: demo
title: Demo
summary: A demo runbook.
start: act
steps:
  act:
    kind: action
    title: Terminate
    preview_sql: SELECT pid FROM pg_stat_activity
    sql: SELECT pid, pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE pid = ANY(%(preview_ids)s::int[])
    result: {verb: terminated, noun: session, column: terminated}
    then: done
    on_decline: done
  done: {kind: conclusion, outcome: healthy, title: Done, verdict: Done., status: ok}
"""


@pytest.mark.parametrize("change,expected", [
    (("column: terminated", "column: killed"),
     ["runbooks/demo.yaml:11: steps.act.result.column: column 'killed' is not returned by the action's sql "
      "(returns: pid, terminated)"]),
    (("column: terminated", "count: n"),
     ["runbooks/demo.yaml:11: steps.act.result.count: column 'n' is not returned by the action's sql "
      "(returns: pid, terminated)"]),
    (("column: terminated", "column: terminated, count: terminated"),
     ["runbooks/demo.yaml:11: steps.act.result: count the rows where `column` is true, or read `count` "
      "from the first row, not both"]),
    (("{verb: terminated, noun: session, column: terminated}", "{noun: session}"),
     ["runbooks/demo.yaml:11: steps.act.result.verb: required field is missing"]),
    (("x", "x"), []),
])
def test_result_wording_is_checked(tmp_path, change, expected):
    write_rb(tmp_path, ACTION_RB.replace(*change))
    assert problems(tmp_path) == expected


def test_a_confirmed_action_says_what_it_did(make_service, pg):  # noqa: F811 - the fixture
    """Two sessions previewed, one of them a process ID no backend has: pg_terminate_backend returns
    false for it, so the run says 1 of 2, on the page, in the API data, the transcript and the CLI's words."""
    victim = psycopg.connect(pg.dsn("app"), application_name="probe-victim", autocommit=True)
    try:
        svc = make_service()
        run = svc.runs.start("probe-terminate", "t", {}, ADMIN, auto=True)
        assert run["current"]["preview"]["row_count"] == 2
        run = svc.runs.advance(run["id"], ADMIN, confirm=True)
        step = next(s for s in run["steps"] if s["outcome"] == "confirmed")
        assert (step["effect"], step["status_message"], step["summary"]) == (
            "terminated 1 of 2 sessions", "SELECT 2", "confirmed: terminated 1 of 2 sessions")
        assert "Done: terminated 1 of 2 sessions (command tag `SELECT 2`)." in svc.runs.transcript(run["id"], ADMIN)
    finally:
        victim.close()
