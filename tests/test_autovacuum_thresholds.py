"""The autovacuum-bloat runbook's thresholds are the ones autovacuum acts on, where the rules differ by major.

With autovacuum off, tables get dead tuples just above or just below their threshold: server
defaults, the table's own reloptions, a table never vacuumed (no reltuples yet), autovacuum disabled
on the table and, on 18, autovacuum_vacuum_max_threshold (server-wide and per table). The runbook's
first step (every row of it) names the threshold and whether each table is past it; then autovacuum
is turned on and must vacuum exactly the tables it said were past and not disabled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from kb.runbooks.loader import load_runbooks
from kb.scenarios.binaries import bindir, parse_majors
from kb.scenarios.cluster import Cluster

# where the rules differ: 13 (reltuples 0 before the first vacuum or analyze, the statistics collector),
# 15 (reltuples -1 as from 14, statistics in shared memory; 16 and 17 change nothing here) and 18
# (autovacuum_vacuum_max_threshold)
MAJORS = [m for m in parse_majors(os.environ.get("KB_PG_MAJORS", "15,18")) if m in (13, 15, 18)]
RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"

# name: (rows, reloptions, rows deleted, vacuumed first, past the threshold, first major)
CASES = {
    "plain_over": (1000, "", 300, True, True, 13),                    # 50 + 0.2 x 1000 = 250
    "plain_under": (1000, "", 200, True, False, 13),
    "own_over": (1000, "autovacuum_vacuum_threshold = 10, autovacuum_vacuum_scale_factor = 0.05", 80, True, True, 13),
    "own_under": (1000, "autovacuum_vacuum_threshold = 10, autovacuum_vacuum_scale_factor = 0.05", 40, True, False, 13),
    "fresh": (200, "", 60, False, True, 13),                          # never vacuumed: 50 + 0.2 x 0
    "disabled": (1000, "autovacuum_enabled = off", 300, True, True, 13),
    "capped": (5000, "", 500, True, True, 18),                        # 1050, capped at 400 server-wide
    "uncapped": (5000, "autovacuum_vacuum_max_threshold = -1", 500, True, False, 18),
    "own_cap": (5000, "autovacuum_vacuum_max_threshold = 450", 500, True, True, 18),
}


def _every_table_sql() -> str:
    """The `tables` step's SQL without its LIMIT 1: the same columns for every table."""
    runbooks, _ = load_runbooks(RUNBOOKS)
    sql = runbooks["autovacuum-bloat"].steps["tables"].sql.rstrip()
    assert sql.endswith("LIMIT 1")
    return sql[: -len("LIMIT 1")]


def _until(conn, sql: str, want: dict) -> None:
    """Poll per-table statistics until they read `want`: a backend reports its counts a moment after its
    transactions end (13 and 14 through the statistics collector), and a VACUUM's reset can come first."""
    end = time.monotonic() + 10
    while dict(conn.execute(sql, {"names": list(want)}).fetchall()) != want and time.monotonic() < end:
        time.sleep(0.05)
    assert dict(conn.execute(sql, {"names": list(want)}).fetchall()) == want, sql


MINE = " FROM pg_stat_user_tables WHERE relname = ANY(%(names)s)"


@pytest.mark.parametrize("major", MAJORS, ids=[f"pg{m}" for m in MAJORS])
def test_thresholds_match_autovacuum(major):
    settings = {"autovacuum": "off", "autovacuum_naptime": "1"}
    if major >= 18:
        settings["autovacuum_vacuum_max_threshold"] = 400
    cases = {name: case for name, case in CASES.items() if major >= case[5]}
    c = Cluster(settings=settings, bindir=bindir(major)).start()
    try:
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            for name, (rows, options, _, _, _, _) in cases.items():
                conn.execute(f"CREATE TABLE public.{name} (id int, note text){f' WITH ({options})' if options else ''}")
                conn.execute(f"INSERT INTO public.{name} SELECT g, 'row' FROM generate_series(1, {rows}) g")
            _until(conn, "SELECT relname, n_tup_ins" + MINE, {n: case[0] for n, case in cases.items()})
            first = [n for n, case in cases.items() if case[3]]  # reltuples known, no insert-triggered vacuum due
            for name in first:
                conn.execute(f"VACUUM public.{name}")
            _until(conn, "SELECT relname, n_ins_since_vacuum" + MINE, {n: 0 for n in first})
            for name, (_, _, deleted, _, _, _) in cases.items():
                conn.execute(f"DELETE FROM public.{name} WHERE id <= {deleted}")
            _until(conn, "SELECT relname, n_dead_tup" + MINE, {n: case[2] for n, case in cases.items()})

            cur = conn.execute(_every_table_sql())
            cols = [d.name for d in cur.description]
            seen = {r["table_name"]: r for r in (dict(zip(cols, row)) for row in cur.fetchall())}
            reltuples = dict(conn.execute("SELECT relname, reltuples FROM pg_class"
                                          " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'").fetchall())
            for name, (_, options, deleted, _, over, _) in cases.items():
                row = seen[f"public.{name}"]
                assert row["n_dead_tup"] == deleted, (name, row)
                assert row["over"] is over, (name, row)
                assert row["autovacuum_disabled"] is ("autovacuum_enabled" in options), (name, row)
                base, scale = (10, 0.05) if "autovacuum_vacuum_threshold" in options else (50, 0.2)
                expected = base + scale * max(reltuples[name], 0)
                cap = 450 if "= 450" in options else (-1 if "= -1" in options else (400 if major >= 18 else -1))
                if cap >= 0:
                    expected = min(expected, cap)
                assert row["threshold"] == round(expected), (name, row, expected)

        # a clean restart keeps the statistics; autovacuum = off on the command line cannot be reloaded away
        c.stop("fast")
        c.settings["autovacuum"] = "on"
        c.start()
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            due = {name for name, case in cases.items() if case[4] and "autovacuum_enabled" not in case[1]}

            def vacuumed() -> set[str]:
                return {n for (n,) in conn.execute("SELECT relname" + MINE + " AND autovacuum_count > 0",
                                                   {"names": list(cases)})}

            end = time.monotonic() + 30
            while not due <= vacuumed() and time.monotonic() < end:
                time.sleep(0.1)
            time.sleep(2.5)  # two more rounds of autovacuum_naptime: the others must stay unvacuumed
            assert vacuumed() == due
    finally:
        c.destroy()
