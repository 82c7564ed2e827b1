"""Evaluates runbook conditions against a step result, with the reason in words. Never uses eval."""

from __future__ import annotations

import re

from kb.runbooks.model import AllOf, AnyOf, Leaf, NotOf, ParamRef


def _num(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "null"
    return str(v)


def _compare(left, op: str, right) -> bool:
    if op == "is null":
        return left is None
    if op == "is not null":
        return left is not None
    if left is None:
        return False
    if op in ("in", "not in"):
        items = right if isinstance(right, list) else [right]
        found = any(_num(left) == _num(i) or str(left) == str(i) for i in items)
        return found if op == "in" else not found
    if op == "contains":
        return str(right).lower() in str(left).lower()
    a, b = _num(left), _num(right)
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        a, b = str(left), str(right)
    try:
        return {"==": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]
    except TypeError:
        return False


class Result:
    """A step result as conditions see it."""

    def __init__(self, columns: list[str], rows: list[list], row_count: int):
        self.columns = columns
        self.rows = [dict(zip(columns, r)) for r in rows]
        self.row_count = row_count


def evaluate(cond, result: Result, params: dict) -> tuple[bool, str]:
    """(holds, reason) for a condition tree."""
    if isinstance(cond, AllOf):
        parts = [evaluate(c, result, params) for c in cond.all]
        ok = all(p[0] for p in parts)
        return ok, " and ".join(p[1] for p in parts) if ok else next(p[1] for p in parts if not p[0])
    if isinstance(cond, AnyOf):
        parts = [evaluate(c, result, params) for c in cond.any]
        hit = next((p for p in parts if p[0]), None)
        return (True, hit[1]) if hit else (False, " and ".join(p[1] for p in parts))
    if isinstance(cond, NotOf):
        ok, why = evaluate(cond.not_, result, params)
        return (not ok), (f"not ({why})" if ok else why)
    return _leaf(cond, result, params)


def _leaf(leaf: Leaf, result: Result, params: dict) -> tuple[bool, str]:
    value, value_txt = leaf.value, _fmt(leaf.value) if not isinstance(leaf.value, list) else str(leaf.value)
    if isinstance(leaf.value, ParamRef):
        value = params.get(leaf.value.param)
        value_txt = f"{_fmt(value)} ({leaf.value.param})"
    op = leaf.op
    rhs = "" if op in ("is null", "is not null") else f" {value_txt}"
    if leaf.row_count:
        ok = _compare(result.row_count, op, value)
        return ok, f"row count {result.row_count} {op if ok else 'not ' + op}{rhs}".replace("not ==", "!=")
    if leaf.param is not None:
        v = params.get(leaf.param)
        ok = _compare(v, op, value)
        return ok, f"{leaf.param} {_fmt(v)} {op if ok else 'not ' + op}{rhs}"
    col = leaf.column
    if not result.rows:
        ok = op == "is null"
        return ok, "no rows"
    if leaf.rows == "first":
        v = result.rows[0].get(col)
        ok = _compare(v, op, value)
        return ok, f"{col} {_fmt(v)} {op}{rhs}" if ok else f"{col} {_fmt(v)} is not {op}{rhs}"
    matches = [r.get(col) for r in result.rows if _compare(r.get(col), op, value)]
    if leaf.rows == "any":
        ok = bool(matches)
        return ok, (f"{len(matches)} of {len(result.rows)} rows have {col} {op}{rhs} (e.g. {_fmt(matches[0])})"
                    if ok else f"no row has {col} {op}{rhs}")
    ok = len(matches) == len(result.rows)
    return ok, (f"all {len(result.rows)} rows have {col} {op}{rhs}" if ok
                else f"{len(result.rows) - len(matches)} of {len(result.rows)} rows do not have {col} {op}{rhs}")


PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def fill(text: str | None, result: Result | None, params: dict) -> str | None:
    """Replace {name} in author text with the first row's column or a parameter (no format())."""
    if not text:
        return text
    first = result.rows[0] if result is not None and result.rows else {}

    def sub(m):
        name = m.group(1)
        if name in first:
            return _fmt(first[name])
        if name in params:
            return _fmt(params[name])
        if name == "row_count" and result is not None:
            return str(result.row_count)
        return NOT_SEEN  # never raw braces: the reader is told the value was not there

    return PLACEHOLDER.sub(sub, text)


NOT_SEEN = "(not seen)"
