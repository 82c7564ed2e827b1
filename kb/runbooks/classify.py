"""Turns a failed step into a classified outcome: condition name, SQLSTATE, message, matching entry.

psycopg raises connection failures without a SQLSTATE, so those are classified from their text by
the knowledge base's own search: the entry whose message template matches names the failure.
"""

from __future__ import annotations

import psycopg
import psycopg.errors

from kb.runbooks import sqlguard
from kb.runbooks.executor import Busy, NoReservedConnection, Unanswered
from kb.runbooks.loader import condition_name
from kb.runbooks.targets import redact


def _condition_for(sqlstate: str | None) -> str | None:
    if not sqlstate:
        return None
    try:
        return condition_name(psycopg.errors.lookup(sqlstate))
    except KeyError:
        return None


def classify(exc: BaseException, secrets: list[str], search=None, entries=None, connected: bool = True) -> dict:
    """A JSON-safe outcome for `exc`; `keys` lists the on_error keys that apply, most specific first."""
    out = {"condition": "error", "sqlstate": None, "message": "", "detail": None, "hint": None,
           "entry": None, "phase": "query" if connected else "connect"}
    if isinstance(exc, Busy):
        out.update(condition="busy", message=str(exc), phase="wait")
    elif isinstance(exc, sqlguard.Refused):
        out.update(condition="refused_sql", message=f"kb refused to run this SQL: {exc}", phase="check")
    elif isinstance(exc, Unanswered):
        out.update(condition="timeout", message=str(exc), phase="query")
    elif isinstance(exc, NoReservedConnection):
        out.update(condition="no_reserved_connection", message=str(exc), phase="connect")
    elif isinstance(exc, psycopg.Error):
        diag = getattr(exc, "diag", None)
        sqlstate = getattr(exc, "sqlstate", None) or (diag.sqlstate if diag else None)
        text = str(exc).strip()
        out["message"] = redact(text.splitlines()[0] if text else type(exc).__name__, secrets)
        if diag is not None and sqlstate:
            out["detail"] = redact(diag.message_detail, secrets) if diag.message_detail else None
            out["hint"] = diag.message_hint
        if sqlstate:
            out["sqlstate"] = sqlstate
            out["condition"] = _condition_for(sqlstate) or "error"
        elif not connected:
            out["condition"] = "connection_failure"
            out["message"] = redact(" ".join(text.split()), secrets)
    else:
        out["message"] = redact(f"{type(exc).__name__}: {exc}", secrets)
    if search is not None and entries is not None and out["message"] and out["phase"] != "check" \
            and not isinstance(exc, Unanswered):
        for hit in search.search(out["message"], limit=3):
            e = entries.get(hit["slug"])
            if e is not None and hit["matched"] and not str(hit["matched"]).startswith("SQLSTATE"):
                out["entry"] = {"slug": e.slug, "title": e.meta.title, "url": e.url}
                if out["sqlstate"] is None and e.meta.sqlstate and not connected:
                    out["sqlstate"] = e.meta.sqlstate[0]
                    out["condition"] = _condition_for(out["sqlstate"]) or out["condition"]
                break
    keys = []
    if out["entry"]:
        keys.append(f"entry:{out['entry']['slug']}")
    for k in (out["sqlstate"], out["condition"]):
        if k and k not in keys:
            keys.append(k)
    if not connected and "connection_failure" not in keys:
        keys.append("connection_failure")
    keys.append("error")
    out["keys"] = keys
    return out
