"""The OpenAPI 3.1 description of /api/v1, with request bodies from the pydantic models."""

from __future__ import annotations

from functools import lru_cache

from kb.web.bodies import AdvanceBody, SearchBody, StartRunBody

ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict | None = None, extra: dict | None = None) -> dict:
    r = {"description": desc}
    if schema is not None:
        r["content"] = {"application/json": {"schema": schema}}
    r.update(extra or {})
    return r


def _errors(*codes: int) -> dict:
    words = {400: "Invalid parameters or body", 401: "Sign in needed", 403: "Role too low",
             404: "Not found", 409: "Run state conflict", 413: "Query or body too large",
             415: "Body is not JSON", 429: "Rate limited (see Retry-After)"}
    return {str(c): _resp(words[c], ERROR) for c in codes}


@lru_cache(maxsize=1)
def spec() -> dict:
    """The whole document."""

    def body(model) -> dict:
        return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}

    q = {"name": "q", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 32768},
         "description": "Pasted error text (log lines, stack traces are fine)"}
    limit = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 50}}
    slug = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
    rid = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
    facets = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in ("engine", "tag", "sqlstate")]
    search_ok = _resp("Ranked results", {"$ref": "#/components/schemas/SearchResults"})
    run_ok = _resp("The run", {"$ref": "#/components/schemas/Run"})
    return {
        "openapi": "3.1.0",
        "info": {"title": "kb API", "version": "1.0.0",
                 "description": "Search PostgreSQL errors, read entries, and run guided runbooks against configured targets. "
                                "Authenticate with `Authorization: Bearer <token>` (tokens from `kb token create`). "
                                "Every error has the shape {ok: false, status, error, errors}."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["ok", "status", "error", "errors"], "properties": {
                    "ok": {"const": False}, "status": {"type": "integer"}, "error": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}}}},
                "SearchHit": {"type": "object", "required": ["slug", "title", "url", "score", "sqlstates", "messages",
                                                             "snippet", "matched", "summary"], "properties": {
                    "slug": {"type": "string"}, "title": {"type": "string"}, "url": {"type": "string"},
                    "score": {"type": "number"}, "sqlstates": {"type": "array", "items": {"type": "string"}},
                    "messages": {"type": "array", "items": {"type": "string"}}, "snippet": {"type": "string"},
                    "matched": {"type": ["string", "null"], "description": "The message template or SQLSTATE that explains the hit"},
                    "summary": {"type": "string", "description": "One line for chat"}}},
                "SearchResults": {"type": "object", "properties": {
                    "query": {"type": "string"}, "count": {"type": "integer"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/SearchHit"}}}},
                "Step": {"type": "object", "description": "One executed step of a run", "properties": {
                    "seq": {"type": "integer"}, "step_id": {"type": "string"},
                    "kind": {"enum": ["diagnostic", "question", "action", "preview", "conclusion"]},
                    "title": {"type": "string"}, "outcome": {"type": "string"},
                    "summary": {"type": "string", "description": "One line for chat"},
                    "sql": {"type": ["string", "null"]}, "columns": {"type": "array"}, "rows": {"type": "array"},
                    "row_count": {"type": "integer"}, "truncated": {"type": "boolean"},
                    "duration_ms": {"type": "number"}, "actor": {"type": "string"},
                    "error": {"type": ["object", "null"], "description": "Classified failure: condition, sqlstate, message, entry"},
                    "branch": {"type": ["object", "null"], "description": "goto, goto_title, reason (in words), say"}}},
                "Run": {"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"enum": ["active", "finished", "failed", "stopped", "abandoned"],
                                                         "description": "abandoned: waited longer than KB_ABANDON_AFTER"},
                    "outcome": {"enum": ["problem", "healthy", "inconclusive", None],
                                "description": "What the run showed: a cause (problem), nothing wrong with every session "
                                               "visible (healthy), or not enough seen (inconclusive: could not connect or "
                                               "see, failed, stopped, abandoned); null while active"},
                    "runbook": {"type": "object"}, "target": {"type": "string"}, "params": {"type": "object"},
                    "current": {"type": ["object", "null"]},
                    "conclusion": {"type": ["object", "null"],
                                   "description": "step_id, title, verdict, outcome, status (ok/warning/critical/unknown), body, fix"},
                    "failure": {"type": ["object", "null"]}, "summary": {"type": "string"},
                    "steps": {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                    "links": {"type": "object", "description": "self, page (HTML stepper), transcript"}}},
            },
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/v1/search": {
                "get": {"summary": "Search by pasted error text", "operationId": "searchGet", "parameters": [q, limit],
                        "responses": {"200": search_ok, **_errors(400, 413, 429)}},
                "post": {"summary": "Search by pasted error text (long pastes)", "operationId": "searchPost",
                         "requestBody": body(SearchBody), "responses": {"200": search_ok, **_errors(400, 413, 415, 429)}},
            },
            "/api/v1/entries": {"get": {"summary": "Entries, filterable by engine, tag, SQLSTATE", "operationId": "entries",
                                        "parameters": facets, "responses": {"200": _resp("Entries", {"type": "object"}), **_errors(400)}}},
            "/api/v1/entries/{slug}": {"get": {"summary": "One entry, fully structured", "operationId": "entry",
                                               "parameters": [slug], "responses": {"200": _resp("The entry", {"type": "object"}), **_errors(404)}}},
            "/api/v1/runbooks": {"get": {"summary": "Runbooks", "operationId": "runbooks", "responses": {"200": _resp("Runbooks", {"type": "object"})}}},
            "/api/v1/runbooks/{id}": {"get": {"summary": "A runbook with steps and parameters", "operationId": "runbook",
                                              "parameters": [rid], "responses": {"200": _resp("The runbook", {"type": "object"}), **_errors(404)}}},
            "/api/v1/targets": {"get": {"summary": "Targets the caller may run against (names only, never DSNs)", "operationId": "targets",
                                        "responses": {"200": _resp("Targets", {"type": "object"})}}},
            "/api/v1/runs": {
                "get": {"summary": "Recent runs", "operationId": "runsList", "parameters": [limit],
                        "responses": {"200": _resp("Runs", {"type": "object"}), **_errors(400, 401, 403)}},
                "post": {"summary": "Start a run (operator)", "operationId": "runsStart", "requestBody": body(StartRunBody),
                         "responses": {"201": _resp("The new run", {"$ref": "#/components/schemas/Run"},
                                                    {"headers": {"Location": {"schema": {"type": "string"}}}}),
                                       **_errors(400, 401, 403, 404, 415, 429)}},
            },
            "/api/v1/runs/{run_id}": {"get": {"summary": "A run: status, current step, history", "operationId": "runGet",
                                              "parameters": [run_id], "responses": {"200": run_ok, **_errors(401, 403, 404)}}},
            "/api/v1/runs/{run_id}/advance": {"post": {
                "summary": "Run the current step; answer a question with {answer}; confirm (admin) or decline an action with {confirm}",
                "operationId": "runAdvance", "parameters": [run_id], "requestBody": {**body(AdvanceBody), "required": False},
                "responses": {"200": run_ok, **_errors(400, 401, 403, 404, 409, 415)}}},
            "/api/v1/runs/{run_id}/transcript": {"get": {
                "summary": "The run as Markdown", "operationId": "runTranscript", "parameters": [run_id],
                "responses": {"200": {"description": "Markdown", "content": {"text/markdown": {"schema": {"type": "string"}}}},
                              **_errors(401, 403, 404)}}},
        },
    }
