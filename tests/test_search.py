"""Search: realistic noisy pastes must rank their entry first; several errors in one paste list each."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kb.knowledge.normalize import normalize_text, sqlstates_in, template_regex, template_tokens

CASES_DIR = Path(__file__).resolve().parent / "search_cases"


def _cases():
    out = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for slug, pastes in (yaml.safe_load(path.read_text()) or {}).items():
            for i, paste in enumerate(pastes):
                out.append(pytest.param(slug, paste, id=f"{path.stem}:{slug}:{i}"))
    return out


@pytest.fixture(scope="module")
def svc(read_app):
    return read_app.extensions["kb"]


@pytest.mark.parametrize("slug,paste", _cases())
def test_paste_ranks_its_entry_first(svc, slug, paste):
    results = svc.search_text(paste, limit=5)["results"]
    assert results, f"no result for {paste!r}"
    assert results[0]["slug"] == slug, [(r["slug"], r["score"], r["matched"]) for r in results]


ISSUE_PASTES = [
    ("2026-04-02 10:11:12.345 UTC [4711] app@shop FATAL:  sorry, too many clients already", "too-many-clients"),
    ('psycopg2.OperationalError: connection to server at "10.0.0.5", port 5432 failed: FATAL:  remaining '
     "connection slots are reserved for non-replication superuser connections", "reserved-connection-slots"),
    ("Invalid `prisma.user.findMany()` invocation:\n\nTimed out fetching a new connection from the connection pool. "
     "More info: http://pris.ly/d/connection-pool (Current connection pool timeout: 10, connection limit: 5)",
     "prisma-p2024-pool-timeout"),
    ("2026-11-26 09:00:01.123 UTC [2231] WARNING C-0x55d: (nodb)/(nouser)@10.1.2.3:51234 pooler error: "
     "no more connections allowed (max_client_conn)", "pgbouncer-max-client-conn"),
]


@pytest.mark.parametrize("paste,slug", ISSUE_PASTES)
def test_issue_examples(svc, paste, slug):
    top = svc.search_text(paste)["results"][0]
    assert top["slug"] == slug
    assert top["matched"] and not top["matched"].startswith("SQLSTATE")


def test_paste_with_several_errors_lists_each(svc):
    log = """
2026-11-26 10:00:00 UTC [101] app@shop FATAL:  sorry, too many clients already
2026-11-26 10:00:02 UTC [102] app@shop ERROR:  deadlock detected
2026-11-26 10:00:02 UTC [102] app@shop DETAIL:  Process 102 waits for ShareLock on transaction 5; blocked by process 103.
2026-11-26 10:00:05 UTC [104] app@shop ERROR:  duplicate key value violates unique constraint "orders_pkey"
"""
    slugs = [r["slug"] for r in svc.search_text(log)["results"]]
    for expected in ("too-many-clients", "deadlock-detected", "duplicate-key-unique-constraint"):
        assert expected in slugs[:4], slugs


def test_sqlstate_alone_finds_entries(svc):
    results = svc.search_text("SQLSTATE 40P01")["results"]
    assert results[0]["slug"] == "deadlock-detected"
    assert results[0]["matched"] == "SQLSTATE 40P01"


def test_results_carry_the_documented_fields(svc):
    r = svc.search_text("FATAL: sorry, too many clients already")["results"][0]
    assert set(r) >= {"slug", "title", "url", "score", "sqlstates", "messages", "snippet", "matched"}
    assert r["url"] == "/errors/too-many-clients" and r["sqlstates"] == ["53300"]


@pytest.mark.parametrize("text,tokens", [
    ("2026-04-02 10:11:12.345 UTC [4711] FATAL:  x", ["nv", "fatal", "x"]),
    ('role "app_user" at 10.0.0.5:5432', ["role", "qv", "at", "hv"]),
    ("db.prod.example.com:5432 timed out after 30000ms", ["hv", "timed", "out", "after", "nv"]),
    ('{"msg":"FATAL: sorry, too many clients already"}', ["qv", "fatal", "sorry", "too", "many", "clients", "already"]),
])
def test_normalisation(text, tokens):
    assert normalize_text(text) == tokens


def test_template_matches_any_variable_part():
    rx = template_regex(template_tokens('too many connections for role "%s"'))
    for paste in ('FATAL: too many connections for role "app"', "too many connections for role app_rw"):
        assert rx.search(" " + " ".join(normalize_text(paste)) + " ")


def test_sqlstates_in_text():
    assert sqlstates_in("SQLSTATE[53300] code '57P01' 12345 ABCDE") == ["53300", "57P01", "12345"]
