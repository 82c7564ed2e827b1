"""Presenting service data: the same dict as a page or as JSON, with a render-once cache."""

from __future__ import annotations

import json

from flask import Response, current_app, render_template, request

from kb.service import Service


def service() -> Service:
    """The process's service layer."""
    return current_app.extensions["kb"]


def json_response(data, status: int = 200) -> Response:
    """Compact JSON response."""
    return Response(json.dumps(data, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json")


def present(template: str, data: dict, json_path: str | None = None, cache_key: str | None = None, **context) -> Response:
    """Render `data` as JSON at `.json` paths, else as `template`; immutable pages render once."""
    as_json = request.path.endswith(".json")
    cache = current_app.extensions.setdefault("kb_page_cache", {})
    key = (cache_key, as_json) if cache_key else None
    if key is not None and key in cache:
        body, mimetype = cache[key]
        resp = Response(body, mimetype=mimetype)
    elif as_json:
        resp = json_response(data)
    else:
        resp = Response(render_template(template, data=data, **context), mimetype="text/html")
    if key is not None and key not in cache:
        cache[key] = (resp.get_data(), resp.mimetype)
    if not as_json:
        alt = json_path or (request.path.rstrip("/") or "/index") + ".json"
        if request.query_string:
            alt += "?" + request.query_string.decode("latin-1")
        resp.headers["Link"] = f'<{alt}>; rel="alternate"; type="application/json"'
    return resp


def limit_arg(default: int = 10) -> int:
    """The `limit` query parameter as an integer (range checks belong to the service)."""
    from kb.errors import BadRequest

    raw = request.args.get("limit", str(default))
    try:
        return int(raw)
    except ValueError:
        raise BadRequest("limit must be an integer", [{"field": "limit", "reason": "an integer 1..50"}]) from None


def slots(text: str | None):
    """Author text on a page that describes a runbook: each {name} shown as a named slot, not braces."""
    from markupsafe import Markup, escape

    from kb.runbooks.conditions import PLACEHOLDER

    if not text:
        return text
    out, last = [], 0
    for m in PLACEHOLDER.finditer(text):
        out += [escape(text[last:m.start()]), Markup('<var class="slot">%s</var>') % m.group(1).replace("_", " ")]
        last = m.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


OUTCOME_LABELS = {"problem": "Problem found", "healthy": "Healthy", "inconclusive": "Inconclusive"}


def outcome_label(outcome: str | None) -> str:
    """How a conclusion's outcome reads on a page: problem, healthy or inconclusive."""
    return OUTCOME_LABELS.get(outcome or "", "Inconclusive")


def language_name(code: str | None) -> str:
    """A gettext language code as a person reads it: de -> German, pt_BR -> Portuguese (Brazil)."""
    from kb.messages.catalog import LANGUAGE_NAMES

    return LANGUAGE_NAMES.get(code or "", code or "")
