"""What a confirmed action did, in words ("terminated 5 of 6 sessions"), from its result alone.

The words never claim more than the result shows: rows where the action's boolean column is false
(pg_terminate_backend found no such backend) are not counted as done, and previewed rows the
action's SQL no longer matched are said to be so.
"""

from __future__ import annotations

import re

TAG_VERBS = {"UPDATE": "updated", "DELETE": "deleted", "INSERT": "inserted", "MERGE": "merged",
             "SELECT": "returned", "COPY": "copied"}


def effect(step, columns: list[str], rows: list[list], row_count: int, status: str,
           previewed: int | None) -> str:
    """The action's result in words; `previewed` is how many previewed rows it was sent (None: not known)."""
    said = step.result
    if said is None:
        return tag_words(status)
    if said.count is not None:
        done = _first_int(columns, rows, said.count)
        if done is None:
            return tag_words(status)
        if previewed is not None and done < previewed:
            return f"{said.verb} {done} of the {previewed} previewed {said.nouns(previewed)}"
        return f"{said.verb} {done} {said.nouns(done)}"
    seen = row_count
    if said.column is not None:
        if said.column not in columns:
            return tag_words(status)
        i = columns.index(said.column)
        done = sum(1 for r in rows if r[i] is True)
        text = f"{said.verb} {done} of {seen} {said.nouns(seen)}" if done < seen else f"{said.verb} {done} {said.nouns(done)}"
        if len(rows) < seen:  # more rows than kb keeps: only the kept ones were read
            text = f"{said.verb} {done} {said.nouns(done)} in the first {len(rows)} of {seen} rows"
    else:
        text = f"{said.verb} {seen} {said.nouns(seen)}"
    if previewed is not None and seen < previewed:
        text += f"; {previewed - seen} of the {previewed} previewed no longer matched"
    return text


def tag_words(status: str) -> str:
    """A command tag in words: "UPDATE 3" -> "updated 3 rows"; an unknown tag as it is."""
    m = re.fullmatch(r"([A-Z]+)(?: \d+)? (\d+)", status or "")
    if m and m.group(1) in TAG_VERBS:
        n = int(m.group(2))
        return f"{TAG_VERBS[m.group(1)]} {n} row{'' if n == 1 else 's'}"
    return f"ran ({status})" if status else "ran"


def _first_int(columns: list[str], rows: list[list], name: str) -> int | None:
    if name not in columns or not rows:
        return None
    value = rows[0][columns.index(name)]
    return value if isinstance(value, int) and not isinstance(value, bool) else None
