"""A runbook drawn as a Graphviz graph (DOT text the browser lays out), with a run's path highlighted."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass, field

from kb.runbooks.conditions import PLACEHOLDER, Result, evaluate
from kb.runbooks.model import (ActionStep, AllOf, AnyOf, ConclusionStep, DiagnosticStep, Leaf, NotOf, ParamRef,
                               QuestionStep, Runbook)

# fill and border per step kind, and per outcome for conclusions; static/graph.css colours the legend
# with the same values (a test holds the two together)
KINDS = {
    "diagnostic": ("#eef2f7", "#5f6f86", "box", "rounded,filled"),
    "question": ("#f1e9fb", "#7b4fb0", "hexagon", "filled"),
    "action": ("#fed7aa", "#c2410c", "cds", "filled"),
}
OUTCOMES = {
    "problem": ("#fbe1de", "#b3261e"),
    "healthy": ("#dff3e4", "#2e7d32"),
    "inconclusive": ("#fdf1cc", "#8a6100"),
}
PATH = "#1d4ed8"  # the path a run took: a blue no step kind or outcome uses
ERROR_EDGE = "#7c8799"
DIM_TEXT = "#8a93a3"
DIM_ALPHA = "59"  # about 35% opaque: dimmed steps keep their colour, faintly
FONT = "Helvetica"  # Graphviz sizes text with Helvetica metrics; graph.css names the fallbacks
COMMON_ERROR = 3  # error edges into one step from this many steps go unlabelled
LABEL_CHARS = 26  # an edge label longer than this is cut short; its tooltip has all of it
OPS = {"==": "=", "!=": "≠", ">=": "≥", "<=": "≤", "is null": "is null", "is not null": "is not null"}


def outcome_of(step: ConclusionStep) -> str:
    """A conclusion's outcome, read from `status` for runbooks written before outcomes existed."""
    outcome = getattr(step, "outcome", None)
    if outcome:
        return outcome
    return {"ok": "healthy", "unknown": "inconclusive"}.get(step.status, "problem")


def _value(v) -> str:
    if isinstance(v, ParamRef):
        return v.param
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return "(" + ", ".join(_value(i) for i in v) + ")"
    if isinstance(v, str):
        return f"'{v}'"
    return str(v)


def describe(cond) -> str:
    """A condition in words, e.g. `usage_pct ≥ saturation_pct and any row: state = 'idle'`."""
    if isinstance(cond, AllOf):
        return " and ".join(_nested(c) for c in cond.all)
    if isinstance(cond, AnyOf):
        return " or ".join(_nested(c) for c in cond.any)
    if isinstance(cond, NotOf):
        return f"not ({describe(cond.not_)})"
    leaf: Leaf = cond
    if leaf.row_count:
        subject = "row count"
    elif leaf.param is not None:
        subject = leaf.param
    else:
        subject = {"first": "", "any": "any row: ", "all": "every row: "}[leaf.rows] + leaf.column
    op = OPS.get(leaf.op, leaf.op)
    if leaf.op in ("is null", "is not null"):
        return f"{subject} {op}"
    if leaf.op == "==" and isinstance(leaf.value, bool):
        return subject if leaf.value else f"not {subject}"
    return f"{subject} {op} {_value(leaf.value)}"


def _nested(cond) -> str:
    text = describe(cond)
    return f"({text})" if isinstance(cond, (AllOf, AnyOf)) else text


def _words(text: str | None) -> str:
    """Author text for a tooltip: {name} shown as a named slot, never as raw braces."""
    if not text:
        return ""
    return PLACEHOLDER.sub(lambda m: "‹" + m.group(1).replace("_", " ") + "›", " ".join(text.split()))


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    """At most `limit` characters, cut at a word when one ends near the limit."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,:") + "…"


def _error_name(key: str) -> str:
    return key.split(":", 1)[1].replace("-", " ") if key.startswith("entry:") else key.replace("_", " ")


@dataclass
class Edge:
    """One way out of a step as the graph draws it."""

    tail: str
    head: str
    how: str  # "branch", "otherwise", "answer", "confirmed", "declined" or "error"
    label: str
    tooltip: str
    keys: list[str] = field(default_factory=list)  # branch index, answer value or error keys it stands for


def edges(rb: Runbook) -> list[Edge]:
    """Every transition of the runbook; the error keys of one step that lead to the same step share an edge."""
    out: list[Edge] = []
    for sid, step in rb.steps.items():
        if isinstance(step, DiagnosticStep):
            for i, br in enumerate(step.branches):
                if br.otherwise:
                    text = "otherwise"
                    out.append(Edge(sid, br.goto, "otherwise", text, _tip(text, br.say), [str(i)]))
                else:
                    text = describe(br.when)
                    out.append(Edge(sid, br.goto, "branch", _short(text), _tip(text, br.say), [str(i)]))
        elif isinstance(step, QuestionStep):
            for a in step.answers:
                out.append(Edge(sid, a.goto, "answer", _short(a.label), f"answer: {a.label}", [a.value]))
        elif isinstance(step, ActionStep):
            out.append(Edge(sid, step.then, "confirmed", "confirmed", "confirmed and run"))
            out.append(Edge(sid, step.on_decline, "declined", "declined", "not confirmed: nothing changed"))
        for key, goto in getattr(step, "on_error", {}).items():
            same = next((e for e in out if e.tail == sid and e.head == goto and e.how == "error"), None)
            if same is None:
                out.append(Edge(sid, goto, "error", "", "", [key]))
            else:
                same.keys.append(key)
    for e in out:
        if e.how == "error":
            names = ", ".join(_error_name(k) for k in e.keys)
            e.label, e.tooltip = _short(f"on error: {names}"), f"on error: {names}"
    # an error most steps route to one conclusion (busy, cannot connect) would write the same words along
    # every dashed line; those lines go unlabelled (the conclusion's title says it, the tooltip still does)
    common = Counter((e.head, e.label) for e in out if e.how == "error")
    for e in out:
        if e.how == "error" and common[(e.head, e.label)] >= COMMON_ERROR:
            e.label = ""
    return out


def _tip(text: str, say: str | None) -> str:
    return f"{text}: {_words(say)}" if say else text


@dataclass
class Path:
    """What a run went through: the steps it visited and the edges (indexes into `edges`) it took."""

    steps: list[str]
    edges: set[int]


def path_of(rb: Runbook, records: list[dict], current: str | None = None) -> Path:
    """The steps a run visited, in order, and the transitions it took, from the run's step records."""
    all_edges = edges(rb)
    visited: list[str] = []
    taken: set[int] = set()
    for rec in records:
        sid = rec.get("step_id")
        if sid not in rb.steps:
            continue
        if sid not in visited:
            visited.append(sid)
        goto = (rec.get("branch") or {}).get("goto")
        if goto is None:
            continue
        index = _taken(rb, all_edges, rec, sid, goto)
        if index is not None:
            taken.add(index)
        if goto in rb.steps and goto not in visited:
            visited.append(goto)
    if current in rb.steps and current not in visited:
        visited.append(current)
    return Path(visited, taken)


def _taken(rb: Runbook, all_edges: list[Edge], rec: dict, sid: str, goto: str) -> int | None:
    """Which of the step's edges a record went along."""
    out = [(i, e) for i, e in enumerate(all_edges) if e.tail == sid and e.head == goto]
    outcome = rec.get("outcome")
    if outcome == "error":
        want = ["error"]
    elif outcome in ("confirmed", "declined"):
        want = [outcome]
    elif outcome == "answered":
        return next((i for i, e in out if e.how == "answer" and rec.get("answer") in e.keys), None)
    else:
        want = ["branch", "otherwise"]
    out = [(i, e) for i, e in out if e.how in want]
    if len(out) <= 1:
        return out[0][0] if out else None
    # several branches lead to the same step: the first whose condition holds on the recorded result
    step = rb.steps[sid]
    if (rec.get("branch") or {}).get("reason", "").startswith("otherwise"):
        return next((i for i, e in out if e.how == "otherwise"), out[0][0])
    result = Result(rec.get("columns") or [], rec.get("rows") or [], rec.get("row_count") or 0)
    for i, e in out:
        br = step.branches[int(e.keys[0])]
        if br.when is not None and evaluate(br.when, result, rec.get("params") or {})[0]:
            return i
    return out[0][0]


def _q(text: str) -> str:
    """A DOT quoted string; `&` escaped since Graphviz reads entities in labels."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;").replace("\n", " ") + '"'


class _Dot(str):
    """Text that is DOT already (a label with line breaks), written as it is."""


def _label(text: str, width: int = 22, lines: int = 4) -> _Dot:
    wrapped = textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = _short(wrapped[-1] + " …", width)
    return _Dot('"' + "\\n".join(_q(w)[1:-1] for w in wrapped) + '"')


def _attrs(**attrs) -> str:
    parts = []
    for k, v in attrs.items():
        if v is None:
            continue
        parts.append(f"{k}={v if isinstance(v, (int, float, _Dot)) else _q(v)}")
    return "[" + ", ".join(parts) + "]"


def _node_style(step) -> tuple[str, str, str, str]:
    if isinstance(step, ConclusionStep):
        fill, border = OUTCOMES[outcome_of(step)]
        return fill, border, "box", "rounded,filled"
    return KINDS[step.kind]


def _node_tip(step) -> str:
    kind = f"conclusion ({outcome_of(step)})" if isinstance(step, ConclusionStep) else step.kind
    more = step.verdict if isinstance(step, ConclusionStep) else (getattr(step, "question", None) or step.purpose)
    return f"{kind}: {step.title}" + (f" — {_words(more)}" if more else "")


def to_dot(rb: Runbook, path: Path | None = None, links: dict[str, str] | None = None) -> str:
    """The runbook as DOT: a node per step, an edge per transition; with `path`, the rest is dimmed."""
    links = links or {}
    lines = [
        "digraph runbook {",
        f"  graph [rankdir=LR, nodesep=0.3, ranksep=0.45, fontname={_q(FONT)}, bgcolor=transparent, "
        f"tooltip={_q(rb.title)}];",
        f"  node [fontname={_q(FONT)}, fontsize=12, margin=\"0.14,0.07\", penwidth=1.4, color=\"#5f6f86\"];",
        f"  edge [fontname={_q(FONT)}, fontsize=10, arrowsize=0.7, color=\"#4b5566\", fontcolor=\"#3b4454\"];",
    ]
    on_path = set(path.steps) if path else set()
    for sid, step in rb.steps.items():
        fill, border, shape, style = _node_style(step)
        attrs = dict(label=_label(step.title), shape=shape, style=style, fillcolor=fill, color=border,
                     tooltip=_node_tip(step), URL=links.get(sid, f"#step-{sid}"), id=f"graph-{sid}",
                     peripheries=2 if isinstance(step, ConclusionStep) else None)
        if sid == rb.start:
            attrs["penwidth"] = 2.2
        if path is not None:
            if sid in on_path:
                attrs.update(color=PATH, penwidth=3.2, **{"class": "on-path"})
            else:
                attrs.update(fillcolor=fill + DIM_ALPHA, color=border + DIM_ALPHA, fontcolor=DIM_TEXT,
                             **{"class": "off-path"})
        lines.append(f"  {_q(sid)} {_attrs(**attrs)};")
    for i, e in enumerate(edges(rb)):
        attrs = dict(label=e.label, tooltip=e.tooltip, labeltooltip=e.tooltip, id=f"graph-edge-{i}")
        if e.how == "error":
            attrs.update(style="dashed", color=ERROR_EDGE, fontcolor=ERROR_EDGE)
        if path is not None:
            if i in path.edges:
                attrs.update(color=PATH, fontcolor=PATH, penwidth=2.6, style="solid", **{"class": "on-path"})
            else:
                attrs.update(color="#b7bec999", fontcolor=DIM_TEXT, **{"class": "off-path"})
        lines.append(f"  {_q(e.tail)} -> {_q(e.head)} {_attrs(**attrs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


LEGEND = [("diagnostic", "Diagnostic (read-only SQL)"), ("question", "Question"), ("action", "Action (writes)"),
          ("problem", "Conclusion: problem"), ("healthy", "Conclusion: healthy"),
          ("inconclusive", "Conclusion: inconclusive")]


def runbook_graph(rb: Runbook) -> dict:
    """What the runbook page needs to draw the graph: its DOT and the legend."""
    return {"dot": to_dot(rb), "legend": LEGEND, "path": False}


def run_graph(rb: Runbook, run: dict) -> dict:
    """The run page's graph: the runbook with the run's path highlighted; nodes link to the run's step cards."""
    current = (run.get("current") or {}).get("id")
    path = path_of(rb, run.get("steps") or [], current)
    links = {sid: f"/runbooks/{rb.id}#step-{sid}" for sid in rb.steps}
    for rec in run.get("steps") or []:
        if rec.get("step_id") in links:
            links[rec["step_id"]] = f"#step-{rec['seq']}"
    if current in links:
        links[current] = "#current"
    # the canvas opens scrolled to where the run is now (or ended), which a wide graph may hide
    return {"dot": to_dot(rb, path, links), "legend": LEGEND, "path": True, "steps": path.steps,
            "focus": f"graph-{path.steps[-1]}" if path.steps else None}
