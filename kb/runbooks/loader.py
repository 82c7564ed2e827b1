"""Loads `runbooks/*.yaml` into Runbook models and checks their graph, parameters, SQL and columns."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import psycopg.errors
import yaml
from pydantic import ValidationError

from kb.knowledge.problems import Problem, YamlLines, display_path, load_yaml, pydantic_problems, yaml_error_problem
from kb.runbooks import sqlguard
from kb.runbooks.conditions import PLACEHOLDER
from kb.runbooks.model import (ActionStep, AllOf, AnyOf, ConclusionStep, DiagnosticStep, Leaf, NotOf,
                              ParamRef, QuestionStep, Runbook)

SQL_PARAM_RE = re.compile(r"%\((\w+)\)s")
ESCAPES_RE = re.compile(r"%%|%\(\w+\)s")  # what psycopg reads as a literal % or a parameter
# Outcome names the engine gives to failures that carry no SQLSTATE of their own.
ENGINE_CONDITIONS = {"connection_failure", "busy", "error", "no_reserved_connection", "timeout", "refused_sql"}


def condition_name(exc_class: type) -> str:
    """`QueryCanceled` -> `query_canceled`: the errcodes.txt spelling of a psycopg error class."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", exc_class.__name__).lower()


def known_conditions() -> set[str]:
    """Every condition name an `on_error` key may use."""
    names = set(ENGINE_CONDITIONS)
    for cls in vars(psycopg.errors).values():
        if isinstance(cls, type) and issubclass(cls, psycopg.errors.Error) and getattr(cls, "sqlstate", None):
            names.add(condition_name(cls))
    return names


def step_edges(step) -> list[tuple[str, str]]:
    """(field, target step id) of every way out of a step."""
    out = []
    if isinstance(step, DiagnosticStep):
        out += [(f"branches[{i}].goto", b.goto) for i, b in enumerate(step.branches)]
        out += [(f"on_error.{k}", v) for k, v in step.on_error.items()]
    elif isinstance(step, QuestionStep):
        out += [(f"answers[{i}].goto", a.goto) for i, a in enumerate(step.answers)]
    elif isinstance(step, ActionStep):
        out += [("then", step.then), ("on_decline", step.on_decline)]
        out += [(f"on_error.{k}", v) for k, v in step.on_error.items()]
    return out


def iter_leaves(cond):
    """Every Leaf of a condition tree."""
    if isinstance(cond, Leaf):
        yield cond
    elif isinstance(cond, AllOf):
        for c in cond.all:
            yield from iter_leaves(c)
    elif isinstance(cond, AnyOf):
        for c in cond.any:
            yield from iter_leaves(c)
    elif isinstance(cond, NotOf):
        yield from iter_leaves(cond.not_)


def select_columns(sql: str) -> list[str] | None:
    """Output column names of the outermost SELECT where they can be read off the text, else None."""
    cols = _select_columns(sql)
    return None if cols is None else list(cols)


@functools.lru_cache(maxsize=1024)
def _select_columns(sql: str) -> tuple[str, ...] | None:
    # the checks ask for the columns of one step's SQL many times (per branch, per placeholder)
    cols = _read_select_columns(sql)
    return None if cols is None else tuple(cols)


def _read_select_columns(sql: str) -> list[str] | None:
    text = re.sub(r"--[^\n]*", "", sql)
    depth, top = 0, []
    for ch in text:
        depth += ch == "("
        top.append(ch if depth == 0 else " ")
        depth -= ch == ")"
    flat = "".join(top)
    m = None
    for m in re.finditer(r"\bselect\b", flat, re.I):
        pass
    if m is None:
        return None
    start = m.end()
    end_m = re.search(r"\b(from|where|group|order|limit|union|having|window)\b", flat[start:], re.I)
    end = start + end_m.start() if end_m else len(text)
    items, depth, cur = [], 0, ""
    for ch in text[start:end]:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    items.append(cur)
    names = []
    for item in (i.strip() for i in items):
        alias = re.search(r"\bas\s+\"?([A-Za-z_][A-Za-z0-9_]*)\"?\s*$", item, re.I)
        if alias:
            names.append(alias.group(1).lower())
        elif re.fullmatch(r"(?:[A-Za-z_]\w*\.)?([A-Za-z_]\w*)", item):
            names.append(item.split(".")[-1].lower())
        else:
            return None  # `*`, expressions without alias: cannot be seen from the text
    return names


def check_runbook(rb: Runbook, path: str, lines: YamlLines, conditions: set[str]) -> list[Problem]:
    """Graph, parameter, SQL and column checks of one valid runbook."""
    problems: list[Problem] = []

    def add(loc, field, reason, level="error"):
        problems.append(Problem(path, lines.line(loc), field, reason, level))

    steps = rb.steps
    if rb.start not in steps:
        add(("start",), "start", f"no step {rb.start!r}")
    for sid, step in steps.items():
        for field, target in step_edges(step):
            if target not in steps:
                loc = ("steps", sid) + tuple(re.split(r"[.\[\]]+", field.rstrip("]")))
                loc = tuple(int(p) if p.isdigit() else p for p in loc if p != "")
                add(loc, f"steps.{sid}.{field}", f"no step {target!r}")
        sqls = []
        if isinstance(step, DiagnosticStep):
            sqls = [("sql", step.sql)] + [(f"variants[{i}].sql", v.sql) for i, v in enumerate(step.variants)]
        elif isinstance(step, ActionStep):
            sqls = [("preview_sql", step.preview_sql), ("sql", step.sql)]
        for field, sql in sqls:
            loc = ("steps", sid, field.split("[")[0])
            for name in SQL_PARAM_RE.findall(sql):
                if name not in rb.params and not (name == "preview_ids" and field == "sql" and isinstance(step, ActionStep)):
                    add(loc, f"steps.{sid}.{field}", f"parameter {name!r} is not defined in params")
            if "%" in ESCAPES_RE.sub("", sql):
                add(loc, f"steps.{sid}.{field}", "a literal % must be written %% (parameters are %(name)s)")
            kind = "action" if isinstance(step, ActionStep) and field == "sql" else "diagnostic"
            try:
                sqlguard.check(sql, kind, rb.target_kind)
            except sqlguard.Refused as exc:
                add(loc, f"steps.{sid}.{field}", str(exc))
        if isinstance(step, (DiagnosticStep, ActionStep)):
            for key in step.on_error:
                if not (re.fullmatch(r"[0-9A-Z]{5}", key) or key in conditions or key.startswith("entry:")):
                    add(("steps", sid, "on_error", key), f"steps.{sid}.on_error.{key}",
                        "not a SQLSTATE, a condition name or entry:<slug>")
        if isinstance(step, ActionStep) and step.result is not None:
            cols = step_columns(step)
            for field in ("column", "count"):
                name = getattr(step.result, field)
                if name is not None and cols is not None and name not in cols:
                    add(("steps", sid, "result", field), f"steps.{sid}.result.{field}",
                        f"column {name!r} is not returned by the action's sql (returns: {', '.join(cols) or 'nothing'})")
        if isinstance(step, ConclusionStep):
            fits = {"healthy": {"ok"}, "inconclusive": {"unknown"}, "problem": {"ok", "warning", "critical"}}
            if step.status not in fits[step.outcome]:
                add(("steps", sid, "status"), f"steps.{sid}.status",
                    f"a {step.outcome} conclusion has status {' or '.join(sorted(fits[step.outcome]))}, not {step.status}")
        if isinstance(step, DiagnosticStep):
            cols = step.columns or select_columns(step.sql)
            if not step.branches[-1].otherwise:
                add(("steps", sid, "branches"), f"steps.{sid}.branches", "the last branch must be `otherwise: true`")
            for i, br in enumerate(step.branches):
                if br.otherwise and i != len(step.branches) - 1:
                    add(("steps", sid, "branches", i), f"steps.{sid}.branches[{i}]", "`otherwise` must be the last branch")
                for leaf in iter_leaves(br.when) if br.when is not None else []:
                    loc = ("steps", sid, "branches", i, "when")
                    if leaf.param and leaf.param not in rb.params:
                        add(loc, f"steps.{sid}.branches[{i}].when", f"parameter {leaf.param!r} is not defined in params")
                    if isinstance(leaf.value, ParamRef) and leaf.value.param not in rb.params:
                        add(loc, f"steps.{sid}.branches[{i}].when", f"parameter {leaf.value.param!r} is not defined in params")
                    if leaf.column and cols is not None and leaf.column not in cols:
                        add(loc, f"steps.{sid}.branches[{i}].when",
                            f"column {leaf.column!r} is not returned by the step (returns: {', '.join(cols)})")
    problems += check_placeholders(rb, path, lines)
    # reachability from start
    seen, todo = set(), [rb.start]
    while todo:
        sid = todo.pop()
        if sid in seen or sid not in steps:
            continue
        seen.add(sid)
        todo += [t for _, t in step_edges(steps[sid])]
    for sid in steps:
        if sid not in seen:
            add(("steps", sid), f"steps.{sid}", "unreachable from the start step")
    # cycles are allowed only through question steps
    graph = {sid: [t for _, t in step_edges(s) if t in steps] for sid, s in steps.items()
             if not isinstance(s, QuestionStep)}
    state: dict[str, int] = {}

    def visit(sid: str, trail: list[str]) -> None:
        state[sid] = 1
        for nxt in graph.get(sid, []):
            if state.get(nxt) == 1 and nxt in graph:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [sid, nxt]
                add(("steps", sid), f"steps.{sid}", f"loop without a question step: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[sid] = 2

    for sid in graph:
        if sid not in state:
            visit(sid, [sid])
    return problems


def step_columns(step) -> list[str] | None:
    """Columns a diagnostic or action step's result has whichever SQL variant runs, or None if unknown."""
    if isinstance(step, DiagnosticStep):
        if step.columns is not None:
            return list(step.columns)
        found = [select_columns(step.sql)] + [select_columns(v.sql) for v in step.variants]
        if any(cols is None for cols in found):
            return None
        return [c for c in found[0] if all(c in cols for cols in found[1:])]
    if isinstance(step, ActionStep):
        return select_columns(step.sql)
    return []


def check_placeholders(rb: Runbook, path: str, lines: YamlLines) -> list[Problem]:
    """Every {name} in a branch's `say` or a conclusion's verdict and body resolves on every way in.

    A branch's words are filled from its own step's first row; a conclusion's from the step that led
    to it: the columns that step returns on that edge (none after an error, a decline or an answer),
    the runbook's parameters, or `row_count`.
    """
    problems: list[Problem] = []
    params = set(rb.params)

    def names_on(pred, field) -> tuple[set[str] | None, str]:
        if isinstance(pred, DiagnosticStep) and field.startswith("branches"):
            cols = step_columns(pred)
        elif isinstance(pred, ActionStep) and field == "then":
            cols = step_columns(pred)
        else:
            return params, "gives no result this way (only parameters resolve)"
        if cols is None:
            return None, "has columns that cannot be read off its SQL (declare `columns:`)"
        return params | set(cols) | {"row_count"}, "returns " + (", ".join(cols) or "no columns")

    for sid, step in rb.steps.items():
        if isinstance(step, DiagnosticStep):
            for i, br in enumerate(step.branches):
                names, what = names_on(step, "branches")
                for name in PLACEHOLDER.findall(br.say or ""):
                    if names is None or name not in names:
                        problems.append(Problem(path, lines.line(("steps", sid, "branches", i, "say")),
                                                f"steps.{sid}.branches[{i}].say",
                                                f"{{{name}}} does not resolve: the step {what}"))
    incoming: dict[str, list[tuple[str, str]]] = {}
    for sid, step in rb.steps.items():
        for field, target in step_edges(step):
            incoming.setdefault(target, []).append((sid, field))
    for cid, step in rb.steps.items():
        if not isinstance(step, ConclusionStep):
            continue
        for attr in ("verdict", "body"):
            wanted = dict.fromkeys(PLACEHOLDER.findall(getattr(step, attr) or ""))
            reported = set()
            for pred_id, field in incoming.get(cid, []):
                names, what = names_on(rb.steps[pred_id], field)
                for name in wanted:
                    if (names is None or name not in names) and name not in reported:
                        reported.add(name)
                        problems.append(Problem(path, lines.line(("steps", cid, attr)), f"steps.{cid}.{attr}",
                                                f"{{{name}}} does not resolve when reached from {pred_id} "
                                                f"({field}): {pred_id} {what}"))
    return problems


def load_runbook(path: Path, conditions: set[str]) -> tuple[Runbook | None, list[Problem]]:
    """One runbook file and its problems."""
    shown = display_path(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(shown, 1, "file", f"cannot read: {exc}")]
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        return None, [yaml_error_problem(shown, exc, "yaml")]
    if not isinstance(raw, dict):
        return None, [Problem(shown, 1, "(root)", "a runbook is a mapping of keys to values")]
    lines = YamlLines.compose(text)
    try:
        rb = Runbook.model_validate(raw)
    except ValidationError as exc:
        return None, pydantic_problems(shown, exc, lines)
    problems = []
    if rb.id != path.stem:
        problems.append(Problem(shown, lines.line(("id",)), "id", f"must match the file name {path.stem!r}"))
    problems += check_runbook(rb, shown, lines, conditions)
    rb._path, rb._lines = shown, lines
    return (None if any(p.level == "error" for p in problems) else rb), problems


def load_runbooks(root: Path) -> tuple[dict[str, Runbook], list[Problem]]:
    """Every `*.yaml` in `root`, keyed by id, with all problems."""
    runbooks: dict[str, Runbook] = {}
    problems: list[Problem] = []
    if not root.is_dir():
        return runbooks, problems
    conditions = known_conditions()
    for path in sorted(list(root.glob("*.yaml")) + list(root.glob("*.yml"))):
        rb, found = load_runbook(path, conditions)
        problems += found
        if rb is not None:
            runbooks[rb.id] = rb
    return runbooks, problems


def check_runbooks_against_entries(runbooks: dict[str, Runbook], entries: dict) -> list[Problem]:
    """Runbooks naming entries (serves, fix links, entry: outcomes) or entry sections that do not exist."""
    problems = []
    slugs = set(entries)
    for rb in runbooks.values():
        path, lines = rb._path, rb._lines
        for i, slug in enumerate(rb.entries):
            if slug not in slugs:
                problems.append(Problem(path, lines.line(("entries", i)), f"entries[{i}]", f"no entry with slug {slug!r}",
                                        ref=("entry", slug)))
        for sid, step in rb.steps.items():
            if isinstance(step, ConclusionStep):
                for i, link in enumerate(step.fix):
                    if link.entry not in slugs:
                        problems.append(Problem(path, lines.line(("steps", sid, "fix", i)), f"steps.{sid}.fix[{i}].entry",
                                                f"no entry with slug {link.entry!r}", ref=("entry", link.entry)))
                    elif link.section and link.section not in _anchors(entries[link.entry]):
                        problems.append(Problem(path, lines.line(("steps", sid, "fix", i)), f"steps.{sid}.fix[{i}].section",
                                                f"entry {link.entry!r} has no section or fix step {link.section!r}"))
            for key in getattr(step, "on_error", {}):
                if key.startswith("entry:") and key[6:] not in slugs:
                    problems.append(Problem(path, lines.line(("steps", sid, "on_error", key)),
                                            f"steps.{sid}.on_error.{key}", f"no entry with slug {key[6:]!r}",
                                            ref=("entry", key[6:])))
    return problems


def _anchors(entry) -> set[str]:
    """Section keys and item ids an entry page has anchors for."""
    out = set(entry.sections)
    for sec in entry.sections.values():
        out.update(i.id for i in sec.items)
    return out
