"""A log sent for triage: a raw body (plain or gzip) or a form's file or pasted text, read as a stream
within KB_TRIAGE_MAX_BYTES (413 naming the limit beyond it); and the timeline drawn for the page."""

from __future__ import annotations

import io

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from kb.errors import ApiError
from kb.web.present import service

DECOMPRESSED_RATIO = 16   # a gzip body may hold this many times the limit once decompressed (a bomb stops there)
CHART_BARS = 120


def limit() -> int:
    """The largest body accepted, in bytes."""
    return int(current_app.extensions["kb_config"].triage_max_bytes)


def size_text(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _too_large(lim: int) -> ApiError:
    return ApiError(413, f"the log is larger than {size_text(lim)}, the most this server accepts "
                         f"(KB_TRIAGE_MAX_BYTES = {lim}); gzip it, or run `kb triage FILE` where the log is",
                    [{"field": "body", "reason": f"at most {lim} bytes"}])


def run_upload() -> dict:
    """Triage the request's log: the raw body (whatever its Content-Type), or the `log` file or `text` field of
    a multipart form; the `prefix` and `format` options come from the query string or the form."""
    from kb.triage import triage

    lim = limit()
    if request.content_length is not None and request.content_length > lim:
        raise _too_large(lim)
    request.max_content_length = lim
    request.max_form_memory_size = lim
    prefix = request.args.get("prefix") or None
    fmt = request.args.get("format") or None
    try:
        # only the page's own form is a form: `curl --data-binary @log` labels a raw log as urlencoded
        if request.mimetype == "multipart/form-data":
            form = request.form
            prefix = form.get("prefix") or prefix
            fmt = form.get("format") or fmt
            upload = request.files.get("log")
            if upload is not None and upload.filename:
                stream = upload.stream
            else:
                stream = io.BytesIO(form.get("text", "").encode("utf-8", "surrogatepass"))
        else:
            stream = request.stream
        return triage(stream, service(), prefix=prefix, fmt=fmt, max_bytes=lim * DECOMPRESSED_RATIO)
    except RequestEntityTooLarge:
        raise _too_large(lim) from None


def page_data(report: dict | None) -> dict:
    """What the /triage page shows (and /triage.json returns): the limit, the formats, the report."""
    from kb.triage.formats import FORMAT_NAMES

    lim = limit()
    return {"limit": lim, "limit_text": size_text(lim), "formats": list(FORMAT_NAMES), "report": report}


def chart(report: dict, width: int = 720, height: int = 90) -> dict | None:
    """The timeline as bars: records per bucket in grey, errors in red on a scale of their own."""
    buckets = report["timeline"]["buckets"]
    if not buckets:
        return None
    step = max(1, -(-len(buckets) // CHART_BARS))
    groups = [buckets[i:i + step] for i in range(0, len(buckets), step)]
    lines = [sum(b["messages"] for b in g) for g in groups]
    errors = [sum(b["errors"] for b in g) for g in groups]
    top_lines, top_errors = max(lines) or 1, max(errors) or 1
    bar = width / len(groups)
    bars = []
    for i, g in enumerate(groups):
        h_lines = round(height * lines[i] / top_lines, 1)
        h_errors = round(height * errors[i] / top_errors, 1) if errors[i] else 0
        bars.append({"x": round(i * bar, 1), "w": round(max(bar - 1, 1), 1), "h_lines": h_lines, "h_errors": h_errors,
                     "y_lines": round(height - h_lines, 1), "y_errors": round(height - h_errors, 1),
                     "label": f"{g[0]['minute']}: {lines[i]:,} messages, {errors[i]:,} errors"})
    minutes = report["timeline"]["bucket_minutes"] * step
    return {"width": width, "height": height, "bars": bars, "bar_minutes": minutes,
            "start": buckets[0]["minute"], "end": buckets[-1]["minute"], "top_errors": max(errors),
            "top_lines": max(lines)}


def sparkline(counts: list[int], width: int = 120, height: int = 18) -> dict | None:
    """One message's timeline as a small bar chart."""
    if not counts or not any(counts):
        return None
    step = max(1, -(-len(counts) // 60))
    cells = [sum(counts[i:i + step]) for i in range(0, len(counts), step)]
    top = max(cells)
    bar = width / len(cells)
    return {"width": width, "height": height,
            "bars": [{"x": round(i * bar, 1), "w": round(max(bar - 0.5, 0.5), 1),
                      "h": round(height * v / top, 1), "y": round(height - height * v / top, 1)}
                     for i, v in enumerate(cells) if v]}


def openapi_schemas() -> dict:
    """The OpenAPI schemas of a triage report."""
    counts = {"type": "object", "additionalProperties": {"type": "integer"},
              "description": "Lines by severity (English names: ERROR for FEHLER, ОШИБКА ...)"}
    common = {
        "count": {"type": "integer"}, "severities": counts,
        "sqlstates": {"type": "array", "items": {"type": "string"},
                      "description": "SQLSTATEs the log printed for it (csvlog, jsonlog, or %e in log_line_prefix)"},
        "first": {"type": ["string", "null"], "description": "Timestamp of the first line, as the log prints it"},
        "last": {"type": ["string", "null"]},
        "example": {"type": "string", "description": "Its first line with the DETAIL, HINT, CONTEXT and STATEMENT lines after it"},
        "minutes": {"type": ["integer", "null"], "description": "Minutes it appeared in (null when only counted)"},
        "timeline": {"type": "array", "items": {"type": "integer"}, "description": "Counts per bucket of the report's timeline"},
        "why": {"type": "string", "description": "Its pattern in words (a burst, started at ... and went on, ...)"},
    }
    ref = {"type": "object", "required": ["id", "title", "url"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"}}}
    return {
        "TriageMessage": {"type": "object", "required": ["message", "kind", "url", "count", "severities", "sqlstates",
                                                         "first", "last", "example", "entry", "runbooks"],
                          "properties": {
            "message": {"type": "string", "description": "The English template"},
            "kind": {"enum": ["entry", "message"], "description": "entry: a written entry explains it; message: a catalog message"},
            "id": {"type": ["string", "null"], "description": "The catalog message (null for an entry's own template, e.g. PgBouncer's)"},
            "url": {"type": "string"}, "message_url": {"type": "string"},
            **common,
            "entry": {"anyOf": [{"$ref": "#/components/schemas/EntryRef"}, {"type": "null"}]},
            "runbooks": {"type": "array", "items": ref},
            "langs": {"type": "array", "items": {"type": "string"}, "description": "Languages it was printed in, besides English"}}},
        "TriageUnrecognised": {"type": "object", "required": ["text", "count", "severities"], "properties": {
            "text": {"type": "string", "description": "The message with its values as placeholders (\"…\", N)"}, **common}},
        "Triage": {"type": "object", "required": ["lines", "bytes", "seconds", "format", "messages", "unrecognised"],
                   "properties": {
            "lines": {"type": "integer"}, "bytes": {"type": "integer", "description": "Bytes of log text (decompressed)"},
            "compressed_bytes": {"type": ["integer", "null"]}, "compression": {"enum": ["gzip", None]},
            "seconds": {"type": "number"},
            "format": {"enum": ["stderr", "csvlog", "jsonlog", "pgbouncer"]}, "format_description": {"type": "string"},
            "prefix": {"type": ["string", "null"], "description": "The log_line_prefix the stderr log was read with"},
            "wrapper": {"type": ["string", "null"], "description": "Docker json-file, Kubernetes (CRI), timestamps or syslog"},
            "encoding": {"type": "string"}, "records": {"type": "integer"},
            "continuation_lines": {"type": "integer"}, "unparsed_lines": {"type": "integer"},
            "severities": counts, "errors": {"type": "integer", "description": "ERROR, FATAL and PANIC lines"},
            "top": {"type": "array", "maxItems": 3, "description": "What to look at first, with why", "items": {
                "type": "object", "properties": {"title": {"type": "string"}, "why": {"type": "string"},
                                                 "url": {"type": ["string", "null"]},
                                                 "section": {"enum": ["messages", "unrecognised"]},
                                                 "index": {"type": "integer"}, "count": {"type": "integer"}}}},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/TriageMessage"},
                         "description": "Recognised messages, by count"},
            "unrecognised": {"type": "array", "items": {"$ref": "#/components/schemas/TriageUnrecognised"},
                             "description": "Unrecognised ERROR, FATAL, PANIC and WARNING lines grouped by normalised text, by count"},
            "unrecognised_capped": {"type": "boolean", "description": "More kinds than listed: the rest share one group"},
            "unrecognised_other": counts,
            "timeline": {"type": "object", "properties": {
                "bucket_minutes": {"type": "integer"}, "start": {"type": ["string", "null"]}, "end": {"type": ["string", "null"]},
                "buckets": {"type": "array", "items": {"type": "object", "properties": {
                    "minute": {"type": "string", "description": "The bucket's first minute"},
                    "messages": {"type": "integer", "description": "Messages (records; not their DETAIL or continued lines)"},
                    "errors": {"type": "integer", "description": "ERROR, FATAL and PANIC messages"},
                    "warnings": {"type": "integer"}}}}}},
            "cut_lines": {"type": "integer"}, "truncated": {"type": ["string", "null"]},
            "notices": {"type": "array", "items": {"type": "string"}}}},
    }


def openapi_path(errors) -> dict:
    """The OpenAPI path item of POST /api/v1/triage (`errors` makes the error responses)."""
    params = [{"name": "prefix", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 500},
               "description": "The server's log_line_prefix, for a stderr log whose prefix is not a common one"},
              {"name": "format", "in": "query", "required": False,
               "schema": {"enum": ["stderr", "csvlog", "jsonlog", "pgbouncer"]}}]
    return {"post": {
        "summary": "Triage a whole log (plain or gzip, told by its bytes): recognised messages with counts, first and "
                   "last seen, entries and runbooks; unrecognised errors; a timeline; what to look at first",
        "description": "Send the log as the raw body (curl --data-binary @postgresql.log.gz). The body may be up to "
                       "KB_TRIAGE_MAX_BYTES (default 256 MB): 413 beyond, naming the limit. Binary data, a log of "
                       "no known format (the formats tried are listed) and an empty body are 422 and 400.",
        "operationId": "triage", "parameters": params,
        "requestBody": {"required": True, "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "The report", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Triage"}}}}, **errors(400, 413, 422, 429)}}}
