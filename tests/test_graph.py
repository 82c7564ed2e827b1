"""The runbook graph: DOT with a node per step and an edge per transition, a run's path highlighted,
the vendored Graphviz build, and the pages that embed the graph."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from kb.runbooks.loader import load_runbooks, step_edges
from kb.runbooks.model import Runbook
from kb.web import graph

ROOT = Path(__file__).resolve().parent.parent
NODE = re.compile(r'^  "((?:[^"\\]|\\.)*)" \[(.*)\];$', re.M)
EDGE = re.compile(r'^  "((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)" \[(.*)\];$', re.M)

PROBE = {
    "id": "probe-graph", "title": "Probe graph", "summary": "Every kind of way out.", "start": "look",
    "params": {"limit": {"type": "int", "label": "Limit", "default": 5}},
    "steps": {
        "look": {"kind": "diagnostic", "title": "Look at it", "sql": "SELECT 1 AS n, 0 AS m",
                 "branches": [{"when": {"column": "n", "op": ">=", "value": {"param": "limit"}}, "goto": "ask"},
                              {"when": {"column": "m", "op": ">", "value": 0}, "goto": "ask", "say": "{m} seen"},
                              {"otherwise": True, "goto": "fine"}],
                 "on_error": {"busy": "unknown", "connection_failure": "unknown", "insufficient_privilege": "fine"}},
        "ask": {"kind": "question", "title": "Which one?", "question": "Which?",
                "answers": [{"value": "a", "label": "The first", "goto": "act"},
                            {"value": "b", "label": "The second", "goto": "act"},
                            {"value": "c", "label": "Neither", "goto": "fine"}]},
        "act": {"kind": "action", "title": "Do it", "preview_sql": "SELECT 1 AS id", "sql": "SELECT pg_sleep(0)",
                "then": "done", "on_decline": "fine", "on_error": {"insufficient_privilege": "unknown"}},
        "done": {"kind": "conclusion", "title": "Done", "verdict": "Done.", "outcome": "problem"},
        "fine": {"kind": "conclusion", "title": "Fine", "verdict": "Fine.", "outcome": "healthy", "status": "ok"},
        "unknown": {"kind": "conclusion", "title": "Unknown", "verdict": "Could not see.", "outcome": "inconclusive",
                    "status": "unknown"},
    },
}


def probe() -> Runbook:
    return Runbook.model_validate(PROBE)


@functools.cache
def shipped() -> dict[str, Runbook]:
    runbooks, problems = load_runbooks(ROOT / "runbooks")
    assert not problems
    return runbooks


def nodes_of(dot: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in NODE.finditer(dot)}


def edges_of(dot: str) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in EDGE.finditer(dot)]


def on_path(attrs: str) -> bool:
    assert ('class="on-path"' in attrs) != ('class="off-path"' in attrs), attrs
    return 'class="on-path"' in attrs


@pytest.mark.parametrize("rid", sorted(shipped()))
def test_every_step_is_a_node_and_every_transition_an_edge(rid):
    rb = shipped()[rid]
    dot = graph.to_dot(rb)
    assert dot.startswith("digraph runbook {\n") and dot.endswith("}\n")
    assert set(nodes_of(dot)) == set(rb.steps)
    drawn = edges_of(dot)
    # error keys of one step that lead to the same step share one edge; every other way out has its own
    want = set()
    for sid, step in rb.steps.items():
        for fld, goto in step_edges(step):
            want.add((sid, goto, "error" if fld.startswith("on_error.") else fld))
    assert {(t, h) for t, h, _ in drawn} == {(t, h) for t, h, _ in want}
    assert len(drawn) == len({w for w in want if w[2] != "error"}) + len({(t, h) for t, h, k in want if k == "error"})
    assert "on-path" not in dot and "off-path" not in dot


def test_nodes_are_shaped_and_coloured_by_kind_and_outcome():
    nodes = nodes_of(graph.to_dot(probe()))
    assert 'shape="box", style="rounded,filled", fillcolor="#eef2f7"' in nodes["look"]
    assert 'shape="hexagon"' in nodes["ask"] and 'shape="cds"' in nodes["act"]
    for sid, outcome in (("done", "problem"), ("fine", "healthy"), ("unknown", "inconclusive")):
        fill, border = graph.OUTCOMES[outcome]
        assert f'fillcolor="{fill}", color="{border}"' in nodes[sid] and "peripheries=2" in nodes[sid]
    assert 'URL="#step-look"' in nodes["look"] and 'id="graph-look"' in nodes["look"]
    assert "penwidth=2.2" in nodes["look"]  # the start step stands out


def test_edges_say_how_the_run_moves_on():
    labels = [(t, h, re.search(r'label="([^"]*)"', a).group(1), re.search(r'tooltip="([^"]*)"', a).group(1))
              for t, h, a in edges_of(graph.to_dot(probe()))]
    assert labels == [
        ("look", "ask", "n ≥ limit", "n ≥ limit"),
        ("look", "ask", "m > 0", "m > 0: ‹m› seen"),
        ("look", "fine", "otherwise", "otherwise"),
        ("look", "unknown", "on error: busy, connectio…", "on error: busy, connection failure"),
        ("look", "fine", "on error: insufficient…", "on error: insufficient privilege"),
        ("ask", "act", "The first", "answer: The first"),
        ("ask", "act", "The second", "answer: The second"),
        ("ask", "fine", "Neither", "answer: Neither"),
        ("act", "done", "confirmed", "confirmed and run"),
        ("act", "fine", "declined", "not confirmed: nothing changed"),
        ("act", "unknown", "on error: insufficient…", "on error: insufficient privilege"),
    ]


@pytest.mark.parametrize(("cond", "words"), [
    ({"column": "used", "op": ">=", "value": {"param": "max_used"}}, "used ≥ max_used"),
    ({"column": "at_limit", "op": "==", "value": True}, "at_limit"),
    ({"column": "at_limit", "op": "==", "value": False}, "not at_limit"),
    ({"column": "state", "op": "==", "value": "idle", "rows": "any"}, "any row: state = 'idle'"),
    ({"column": "age", "op": "<", "value": 60.0, "rows": "all"}, "every row: age < 60"),
    ({"row_count": True, "op": "!=", "value": 0}, "row count ≠ 0"),
    ({"param": "mode", "op": "in", "value": ["a", "b"]}, "mode in ('a', 'b')"),
    ({"column": "slot", "op": "is null"}, "slot is null"),
    ({"all": [{"column": "a", "op": ">", "value": 1},
              {"any": [{"column": "b", "op": "<=", "value": 2}, {"not": {"column": "c", "op": "contains", "value": "x"}}]}]},
     "a > 1 and (b ≤ 2 or not (c contains 'x'))"),
])
def test_conditions_in_words(cond, words):
    rb = Runbook.model_validate({**PROBE, "steps": {**PROBE["steps"], "look": {
        **PROBE["steps"]["look"], "branches": [{"when": cond, "goto": "ask"}, {"otherwise": True, "goto": "fine"}]}}})
    assert graph.describe(rb.steps["look"].branches[0].when) == words


def test_long_labels_are_cut_with_the_whole_text_in_the_tooltip():
    long = {"all": [{"column": "waiting_sessions", "op": ">=", "value": {"param": "limit"}},
                    {"column": "oldest_wait_seconds", "op": ">", "value": 30}]}
    rb = Runbook.model_validate({**PROBE, "steps": {**PROBE["steps"], "look": {
        **PROBE["steps"]["look"], "branches": [{"when": long, "goto": "ask"}, {"otherwise": True, "goto": "fine"}]}}})
    edge = graph.edges(rb)[0]
    assert edge.label == "waiting_sessions ≥ limit…" and len(edge.label) <= graph.LABEL_CHARS
    assert edge.tooltip == "waiting_sessions ≥ limit and oldest_wait_seconds > 30"


def test_author_text_is_quoted_for_dot():
    rb = Runbook.model_validate({**PROBE, "steps": {**PROBE["steps"], "done": {
        **PROBE["steps"]["done"], "title": 'Say "no" \\N </script> & go', "verdict": "{n} left"}}})
    attrs = nodes_of(graph.to_dot(rb))["done"]
    assert r'label="Say \"no\" \\N </script>\n&amp; go"' in attrs
    assert "Say \\\"no\\\" \\\\N </script> &amp; go — ‹n› left" in attrs  # the tooltip names the slot


def test_an_error_most_steps_share_goes_unlabelled():
    steps = dict(PROBE["steps"])
    for sid in ("s1", "s2"):
        steps[sid] = {"kind": "diagnostic", "title": f"Step {sid}", "sql": "SELECT 1 AS n",
                      "branches": [{"otherwise": True, "goto": "fine"}], "on_error": {"busy": "unknown"}}
    steps["look"] = {**steps["look"], "on_error": {"busy": "unknown"}}
    errors = [e for e in graph.edges(Runbook.model_validate({**PROBE, "steps": steps})) if e.how == "error"]
    busy = [e for e in errors if e.tooltip == "on error: busy"]
    assert len(busy) == 3 and all(e.label == "" for e in busy)


def record(sid, **fields):
    return {"step_id": sid, "kind": PROBE["steps"][sid]["kind"], "outcome": "ok", "branch": None, **fields}


def branch(goto, reason="because"):
    return {"goto": goto, "reason": reason}


def highlighted(dot: str) -> tuple[set[str], list[tuple[str, str, str]]]:
    nodes = {sid for sid, attrs in nodes_of(dot).items() if on_path(attrs)}
    edges = [(t, h, re.search(r'label="([^"]*)"', a).group(1)) for t, h, a in edges_of(dot) if on_path(a)]
    return nodes, edges


@pytest.mark.parametrize(("records", "current", "nodes", "edges"), [
    # the second branch to `ask` held (m > 0), the answer was the second, the action was confirmed
    ([record("look", columns=["n", "m"], rows=[[1, 3]], row_count=1, params={"limit": 5}, branch=branch("ask")),
      record("ask", outcome="answered", answer="b", branch=branch("act")),
      record("act", kind="preview", outcome="preview"),
      record("act", outcome="confirmed", branch=branch("done")),
      record("done", outcome="concluded")],
     None, {"look", "ask", "act", "done"},
     [("look", "ask", "m > 0"), ("ask", "act", "The second"), ("act", "done", "confirmed")]),
    # the first branch held; the run now waits at the question
    ([record("look", columns=["n", "m"], rows=[[9, 0]], row_count=1, params={"limit": 5}, branch=branch("ask"))],
     "ask", {"look", "ask"}, [("look", "ask", "n ≥ limit")]),
    # declined
    ([record("look", branch=branch("fine", "otherwise (n 1 is not >= 5 (limit))"))],
     None, {"look", "fine"}, [("look", "fine", "otherwise")]),
    # an error routed by on_error, and a failure with no route (the path ends at the failed step)
    ([record("look", outcome="error", branch=branch("fine", "on error insufficient_privilege")), record("fine")],
     None, {"look", "fine"}, [("look", "fine", "on error: insufficient…")]),
    ([record("look", outcome="error", branch=None)], None, {"look"}, []),
    ([record("look", branch=branch("ask")), record("ask", outcome="answered", answer="a", branch=branch("act")),
      record("act", outcome="declined", branch=branch("fine")), record("fine", outcome="concluded")],
     None, {"look", "ask", "act", "fine"},
     [("look", "ask", "n ≥ limit"), ("ask", "act", "The first"), ("act", "fine", "declined")]),
], ids=["second-branch-confirmed", "waiting", "otherwise", "on-error", "failed", "declined"])
def test_a_run_highlights_exactly_the_steps_and_transitions_it_took(records, current, nodes, edges):
    rb = probe()
    run = {"steps": [dict(r, seq=i + 1) for i, r in enumerate(records)], "current": {"id": current} if current else None}
    g = graph.run_graph(rb, run)
    got_nodes, got_edges = highlighted(g["dot"])
    assert got_nodes == nodes and got_edges == edges
    assert set(g["steps"]) == nodes and g["steps"][0] == "look"  # in the order visited
    assert g["focus"] == f"graph-{g['steps'][-1]}"  # where the run is now, or ended
    links = {sid: re.search(r'URL="([^"]*)"', a).group(1) for sid, a in nodes_of(g["dot"]).items()}
    assert links["look"] == f"#step-{max(i + 1 for i, r in enumerate(records) if r['step_id'] == 'look')}"
    assert links["unknown"] == "/runbooks/probe-graph#step-unknown"  # never visited: the runbook page
    if current:
        assert links[current] == "#current"


def test_dimmed_steps_keep_their_colour_faintly():
    rb = probe()
    g = graph.run_graph(rb, {"steps": [dict(record("look", branch=branch("fine", "otherwise")), seq=1),
                                       dict(record("fine", outcome="concluded"), seq=2)]})
    nodes = nodes_of(g["dot"])
    assert f'color="{graph.PATH}"' in nodes["look"] and "penwidth=3.2" in nodes["look"]
    fill, border = graph.OUTCOMES["problem"]
    assert f'fillcolor="{fill}{graph.DIM_ALPHA}", color="{border}{graph.DIM_ALPHA}"' in nodes["done"]


def test_outcome_falls_back_to_status():
    for status, outcome in (("ok", "healthy"), ("unknown", "inconclusive"), ("warning", "problem"),
                            ("critical", "problem")):
        assert graph.outcome_of(SimpleNamespace(status=status)) == outcome
    assert graph.outcome_of(SimpleNamespace(status="ok", outcome="problem")) == "problem"


def test_the_legend_colours_are_the_graph_colours():
    css = (ROOT / "static" / "graph.css").read_text()
    for kind, (fill, border, _, _) in graph.KINDS.items():
        assert f".swatch-{kind} {{ background: {fill}; border-color: {border};" in css
    for outcome, (fill, border) in graph.OUTCOMES.items():
        assert f".swatch-{outcome} {{ background: {fill}; border-color: {border};" in css
    assert f"border-top: 3px solid {graph.PATH};" in css and f"2px dashed {graph.ERROR_EDGE};" in css
    assert [k for k, _ in graph.LEGEND] == [*graph.KINDS, *graph.OUTCOMES]


def test_the_vendored_graphviz_build_is_the_one_noted():
    vendor = ROOT / "static" / "vendor" / "viz"
    note = (vendor / "README.md").read_text()
    body = (vendor / "viz-global.js").read_bytes()
    assert hashlib.sha256(body).hexdigest() in note
    version = re.search(r"`@viz-js/viz` (\d+\.\d+\.\d+)", note).group(1)
    assert body.startswith(f"/*!\nViz.js {version}\n".encode())
    assert "MIT License" in (vendor / "LICENSE").read_text()


def test_runbook_page_embeds_the_graph_over_its_step_list(client):
    resp = client.get("/runbooks/connection-exhaustion")
    html = resp.get_data(as_text=True)
    assert '<section class="rbgraph" id="graph" aria-labelledby="graph-title" data-graph hidden>' in html
    dot = re.search(r'data-dot="([^"]*)"', html).group(1)
    assert dot.startswith("digraph runbook {") and "&#34;slots&#34; -&gt; &#34;limits&#34;" in dot
    assert '<li id="step-slots">' in html  # the list without JavaScript, and the nodes' anchors
    assert "/static/vendor/viz/viz-global.js" in html and "/static/graph.js" in html
    assert "script-src 'self' 'wasm-unsafe-eval';" in resp.headers["Content-Security-Policy"]
    assert "data-dot" not in client.get("/runbooks/connection-exhaustion.json").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/errors/too-many-clients", "/runbooks", "/runbooks/connection-exhaustion.json",
                                  "/api/v1/runbooks/connection-exhaustion", "/static/graph.js"])
def test_other_pages_keep_the_strict_script_policy(client, path):
    resp = client.get(path)
    resp.close()
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "wasm" not in policy
