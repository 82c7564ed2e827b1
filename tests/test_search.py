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


# --- hostile input: every search at the 32 KB cap stays within a CPU bound --------------------------

CAP = 32_768
CPU_BOUND_MS = 150  # the bench target is 50 ms; slack for slower machines, far below any backtracking blow-up
HOSTILE_UNITS = ["a.", "a-", "x.y.", "1.", "a:", "'", '"a', '\\"', "0x", "[", "«", "%s", "1.1.", "ab12 ", "fe80::",
                 "a://", "2026-01-01 ", "a" * 100 + ".", "1" * 50 + "x"]
HOSTILE_ALPHABET = "ab0x19.:-_'\"`«»\\/[]% \n\u00e9\u0430"


def _fill(unit: str) -> str:
    return (unit * (CAP // len(unit) + 1))[:CAP]


def _cpu_ms(ix, text: str) -> float:
    import time
    t0 = time.process_time()
    ix.search(text)
    return (time.process_time() - t0) * 1000


@pytest.fixture
def ix(svc):
    index = svc.search
    saved, index.cache_bytes = index.cache_bytes, 0  # every call pays the whole search
    yield index
    index.cache_bytes = saved


def test_prose_scores_are_whooshs_own(ix):
    """The prose query is scored from postings read once (SearchIndex._bm25f); Whoosh's searcher,
    asked the same union of terms, ranks the same entries in the same order with the same scores."""
    import random

    from whoosh.query import Or, Term

    rng = random.Random(11)
    terms = sorted((f, t) for f in ("tmpl", "title", "prose", "tags") for t in ix._lexicon[f])
    searcher = ix._ix.searcher()
    try:
        for _ in range(300):
            picked = [Term(f, t) for f, t in rng.sample(terms, rng.randint(1, 16))]
            limit = rng.choice([1, 5, 20, 50])
            whoosh = {hit["slug"]: hit.score for hit in searcher.search(Or(picked), limit=limit)}
            ours = ix._bm25f(picked, limit)
            assert list(ours) == list(whoosh), picked
            assert all(ours[k] == pytest.approx(whoosh[k], rel=1e-12) for k in whoosh), picked
    finally:
        searcher.close()


@pytest.mark.parametrize("unit", HOSTILE_UNITS)
def test_hostile_repetition_is_bounded(ix, unit):
    assert _cpu_ms(ix, _fill(unit)) < CPU_BOUND_MS


def test_every_templates_words_is_bounded(ix):
    words = " ".join(t.message for t in ix._templates)
    for text in (_fill(words + " "), _fill(words.replace(" ", ""))):
        assert _cpu_ms(ix, text) < CPU_BOUND_MS


def test_random_32kb_inputs_are_bounded(ix):
    from hypothesis import HealthCheck, given, settings, strategies as st

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(unit=st.text(alphabet=HOSTILE_ALPHABET, min_size=1, max_size=16), seed=st.integers(0, 2**32))
    def check(unit, seed):
        import random
        rng = random.Random(seed)
        noise = "".join(rng.choice(HOSTILE_ALPHABET) for _ in range(CAP))
        for text in (_fill(unit), noise):
            assert _cpu_ms(ix, text) < CPU_BOUND_MS, (unit, seed)

    check()


def test_cache_is_bounded_in_bytes(svc, tmp_path):
    import tracemalloc
    from kb.knowledge.search import SearchIndex
    base = svc.search
    index = SearchIndex(base.index_dir, [], cache_bytes=64 * 1024)
    index._templates, index._anchors, index._sqlstates = base._templates, base._anchors, base._sqlstates
    index._server_side, index._related = base._server_side, base._related
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(400):
        index.search(f"ERROR: deadlock detected {'word%d ' % i * 2000}")  # distinct long pastes
    entries, used = index.cache_footprint()
    held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename")
               if s.traceback[0].filename.endswith(("search.py", "collections/__init__.py")))
    tracemalloc.stop()
    assert used <= 64 * 1024 and 0 < entries < 400
    assert held < 3 * 64 * 1024, held  # the estimate tracks what is really held, keys included
