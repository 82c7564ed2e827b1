"""The OpenAPI 3.1 description of /api/v1, with request bodies and the responses built from content and
runs generated from the pydantic models the API validates them with."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel

from kb.web import responses
from kb.web.bodies import AdvanceBody, SearchBody, StartRunBody
from kb.web.triage import openapi_path as triage_path, openapi_schemas as triage_schemas

REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/schemas/Error"}
# sent through kb.web.responses.sent, so these schemas describe exactly what goes out
RESPONSE_MODELS = (responses.EntryList, responses.Entry, responses.RunbookList, responses.Runbook,
                   responses.TargetList, responses.RunList)


def ref(model: type[BaseModel]) -> dict:
    """A reference to a model's schema among the components."""
    return {"$ref": REF.format(model=model.__name__)}


def model_schemas(models, schemas: dict) -> dict:
    """`schemas` with each model's serialization schema and its $defs added, names checked unique."""
    out = dict(schemas)
    for model in models:
        schema = model.model_json_schema(ref_template=REF, mode="serialization")
        for name, item in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if out.setdefault(name, item) != item:
                raise ValueError(f"two OpenAPI schemas are named {name}")
    return out


def _resp(desc: str, schema: dict | None = None, extra: dict | None = None) -> dict:
    r = {"description": desc}
    if schema is not None:
        r["content"] = {"application/json": {"schema": schema}}
    r.update(extra or {})
    return r


def _errors(*codes: int) -> dict:
    words = {400: "Invalid parameters or body", 401: "Sign in needed", 403: "Role too low",
             404: "Not found", 409: "Run state conflict", 413: "Query or body too large",
             415: "Body is not JSON", 422: "Not a log kb can read", 429: "Rate limited (see Retry-After)"}
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
    mid = {"name": "mid", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "A catalog message id, as search results and /messages/<id> pages give it"}
    code = {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}, "description": "A SQLSTATE, e.g. 53300"}
    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
    facets = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in ("engine", "tag", "sqlstate")]
    search_ok = _resp("Ranked results", {"$ref": "#/components/schemas/SearchResults"})
    run_ok = _resp("The run", {"$ref": "#/components/schemas/Run"})
    return {
        "openapi": "3.1.0",
        "info": {"title": "kb API", "version": "1.0.0",
                 "description": "Search PostgreSQL errors, read entries, catalog messages and SQLSTATEs, and run guided runbooks against configured targets. "
                                "Authenticate with `Authorization: Bearer <token>` (tokens from `kb token create`). "
                                "Every error has the shape {ok: false, status, error, errors}."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": model_schemas(RESPONSE_MODELS, {
                "Error": {"type": "object", "required": ["ok", "status", "error", "errors"], "properties": {
                    "ok": {"const": False}, "status": {"type": "integer"}, "error": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}}}},
                "SqlStateRef": {"type": "object", "required": ["code", "condition", "class", "class_name", "url"], "properties": {
                    "code": {"type": "string", "pattern": "^[0-9A-Z]{5}$"},
                    "condition": {"type": ["string", "null"], "description": "The condition name PL/pgSQL accepts"},
                    "class": {"type": "string"}, "class_name": {"type": "string"}, "url": {"type": "string"}}},
                "FoundMessage": {"type": "object", "description": "A catalog message found in the pasted text",
                                 "required": ["id", "template", "kind", "values", "text", "url"], "properties": {
                    "id": {"type": "string"}, "template": {"type": "string"}, "kind": {"$ref": "#/components/schemas/MessageKind"},
                    "lang": {"type": ["string", "null"], "description": "The language it was written in (en when English)"},
                    "values": {"type": "array", "items": {"type": "string"}, "description": "What the paste holds for each placeholder"},
                    "text": {"type": "string", "description": "The text of the paste that matched"},
                    "url": {"type": "string"}}},
                "MessageKind": {"enum": ["primary", "detail", "hint", "setting", "other"]},
                "SearchHit": {"type": "object", "required": ["slug", "title", "url", "score", "sqlstates", "messages",
                                                             "snippet", "matched", "summary", "kind", "match"], "properties": {
                    "slug": {"type": ["string", "null"], "description": "The entry; null for a catalog message without one"},
                    "id": {"type": "string", "description": "The catalog message's id (kind message)"},
                    "title": {"type": "string"}, "url": {"type": "string"},
                    "score": {"type": "number"}, "sqlstates": {"type": "array", "items": {"type": "string"}},
                    "messages": {"type": "array", "items": {"type": "string"}}, "snippet": {"type": "string"},
                    "matched": {"type": ["string", "null"], "description": "The message template or SQLSTATE that explains the hit"},
                    "summary": {"type": "string", "description": "One line for chat"},
                    "kind": {"enum": ["entry", "message"],
                             "description": "entry: a written entry; message: a catalog message with no entry yet (see url)"},
                    "match": {"enum": ["message", "sqlstate", "related", "words"],
                              "description": "How it was found: a known message in the text, a SQLSTATE printed in it, a "
                                             "companion the matched entry names, or wording only (a suggestion, not an answer)"},
                    "lang": {"type": ["string", "null"], "description": "The language of the found message"},
                    "message": {"$ref": "#/components/schemas/FoundMessage"},
                    "details": {"type": "array", "items": {"$ref": "#/components/schemas/FoundMessage"},
                                "description": "DETAIL and HINT lines found with the message"},
                    "of": {"type": "string", "description": "match related: the slug of the matched entry it accompanies"}}},
                "SearchResults": {"type": "object", "required": ["query", "count", "match", "results", "sqlstates"], "properties": {
                    "query": {"type": "string"}, "count": {"type": "integer"},
                    "match": {"enum": ["message", "sqlstate", "none"],
                              "description": "What the text held: a known message, only a SQLSTATE, or neither"},
                    "notice": {"type": "string", "description": "Set when match is none: the results are suggestions"},
                    "sqlstates": {"type": "array", "items": {"$ref": "#/components/schemas/SqlStateRef"},
                                  "description": "SQLSTATEs printed as such in the text"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/SearchHit"}}}},
                "Message": {"type": "object", "description": "A message of the catalog PostgreSQL 13-18 print",
                            "required": ["id", "template", "component", "kind", "generic", "versions", "translations",
                                         "entry", "entries", "sqlstates", "class_entries", "sources"], "properties": {
                    "id": {"type": "string"}, "template": {"type": "string"},
                    "component": {"enum": ["postgres", "plpgsql", "libpq", "psql"]}, "component_name": {"type": "string"},
                    "kind": {"$ref": "#/components/schemas/MessageKind"}, "kind_name": {"type": "string"},
                    "generic": {"type": "boolean", "description": "Too generic to identify anything alone"},
                    "origin": {"enum": ["translation", "binary"], "description": "Read from the gettext catalogs, or from a binary"},
                    "plural": {"type": ["string", "null"]},
                    "versions": {"type": "array", "items": {"type": "integer"}, "description": "Majors whose binaries print it"},
                    "versions_known": {"type": "array", "items": {"type": "integer"}},
                    "all_majors": {"type": "array", "items": {"type": "integer"}},
                    "translations": {"type": "array", "items": {"$ref": "#/components/schemas/Translation"}},
                    "entry": {"anyOf": [{"$ref": "#/components/schemas/EntryRef"}, {"type": "null"}]},
                    "entries": {"type": "array", "items": {"type": "object"},
                                "description": "Every entry explaining it, with `when`: the alternative placeholder values "
                                               "([{position, value}]) that select it, [] when it explains the message as such"},
                    "sqlstates": {"type": "array", "items": {"$ref": "#/components/schemas/SqlStateRef"}},
                    "class_entries": {"type": "array", "items": {"$ref": "#/components/schemas/EntryRef"}},
                    "note": {"type": ["string", "null"]}, "url": {"type": "string"}, "sources": {"type": "string"}}},
                "SqlState": {"type": "object", "required": ["code", "condition", "class", "class_name", "type", "macro",
                                                            "majors", "psycopg", "url"], "properties": {
                    "code": {"type": "string"}, "condition": {"type": ["string", "null"]},
                    "class": {"type": "string"}, "class_name": {"type": "string"},
                    "type": {"enum": ["error", "warning", "success"]}, "macro": {"type": "string"},
                    "majors": {"type": "array", "items": {"type": "integer"}, "description": "Majors whose errcodes.txt lists it"},
                    "psycopg": {"type": ["string", "null"], "description": "psycopg.errors class raised for it"},
                    "url": {"type": "string"},
                    "entries": {"type": "array", "items": {"$ref": "#/components/schemas/EntryRef"}},
                    "class_entries": {"type": "array", "items": {"$ref": "#/components/schemas/EntryRef"}},
                    "messages": {"type": "array", "items": {"type": "object"}, "description": "Catalog messages known to carry it"},
                    "message_count": {"type": "integer"}, "sources": {"type": "string"}}},
                "SqlStates": {"type": "object", "required": ["count", "classes"], "properties": {
                    "count": {"type": "integer"}, "class_count": {"type": "integer"}, "entry_count": {"type": "integer"},
                    "classes": {"type": "array", "items": {"type": "object", "properties": {
                        "class": {"type": "string"}, "class_name": {"type": "string"}, "url": {"type": "string"},
                        "sqlstates": {"type": "array", "items": {"$ref": "#/components/schemas/SqlState"}}}}},
                    "sources": {"type": "string"}}},
                "Step": {"type": "object", "description": "One executed step of a run", "properties": {
                    "seq": {"type": "integer"}, "step_id": {"type": "string"},
                    "kind": {"enum": ["diagnostic", "question", "action", "preview", "conclusion"]},
                    "title": {"type": "string"}, "outcome": {"type": "string"},
                    "summary": {"type": "string", "description": "One line for chat"},
                    "sql": {"type": ["string", "null"]}, "columns": {"type": "array"}, "rows": {"type": "array"},
                    "row_count": {"type": "integer"}, "truncated": {"type": "boolean"},
                    "duration_ms": {"type": "number"}, "actor": {"type": "string"},
                    "status_message": {"type": "string", "description": "The server's command tag, e.g. SELECT 6"},
                    "effect": {"type": "string", "description": "An action's result in words, e.g. terminated 5 of 6 "
                                                                "sessions (action steps only)"},
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
                **triage_schemas(),
            }),
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
                                        "parameters": facets, "responses": {"200": _resp("Entries", ref(responses.EntryList)), **_errors(400)}}},
            "/api/v1/entries/{slug}": {"get": {"summary": "One entry, fully structured", "operationId": "entry",
                                               "parameters": [slug], "responses": {"200": _resp("The entry", ref(responses.Entry)), **_errors(404)}}},
            "/api/v1/messages/{mid}": {"get": {"summary": "A catalog message: template, kind, versions, translations, entries",
                                               "operationId": "message", "parameters": [mid],
                                              "responses": {"200": _resp("The message", {"$ref": "#/components/schemas/Message"}),
                                                            **_errors(404)}}},
            "/api/v1/sqlstates": {"get": {"summary": "Every SQLSTATE of PostgreSQL 13-18, by class", "operationId": "sqlstates",
                                          "responses": {"200": _resp("SQLSTATEs", {"$ref": "#/components/schemas/SqlStates"})}}},
            "/api/v1/sqlstates/{code}": {"get": {"summary": "One SQLSTATE: class, condition name, psycopg class, entries, messages",
                                                 "operationId": "sqlstate", "parameters": [code],
                                                 "responses": {"200": _resp("The SQLSTATE", {"$ref": "#/components/schemas/SqlState"}),
                                                               **_errors(404)}}},
            "/api/v1/runbooks": {"get": {"summary": "Runbooks", "operationId": "runbooks", "responses": {"200": _resp("Runbooks", ref(responses.RunbookList))}}},
            "/api/v1/runbooks/{id}": {"get": {"summary": "A runbook with steps and parameters", "operationId": "runbook",
                                              "parameters": [rid], "responses": {"200": _resp("The runbook", ref(responses.Runbook)), **_errors(404)}}},
            "/api/v1/targets": {"get": {"summary": "Targets the caller may run against (names only, never DSNs)", "operationId": "targets",
                                        "responses": {"200": _resp("Targets", ref(responses.TargetList))}}},
            "/api/v1/runs": {
                "get": {"summary": "Recent runs", "operationId": "runsList", "parameters": [limit],
                        "responses": {"200": _resp("Runs", ref(responses.RunList)), **_errors(400, 401, 403)}},
                "post": {"summary": "Start a run (operator)", "operationId": "runsStart", "requestBody": body(StartRunBody),
                         "responses": {"201": _resp("The new run", {"$ref": "#/components/schemas/Run"},
                                                    {"headers": {"Location": {"schema": {"type": "string"}}}}),
                                       **_errors(400, 401, 403, 404, 415, 429)}},
            },
            "/api/v1/runs/{run_id}": {"get": {"summary": "A run: status, current step, the steps run so far", "operationId": "runGet",
                                              "parameters": [run_id], "responses": {"200": run_ok, **_errors(401, 403, 404)}}},
            "/api/v1/runs/{run_id}/advance": {"post": {
                "summary": "Run the current step; answer a question with {answer}; confirm (admin) or decline an action with {confirm}",
                "operationId": "runAdvance", "parameters": [run_id], "requestBody": {**body(AdvanceBody), "required": False},
                "responses": {"200": run_ok, **_errors(400, 401, 403, 404, 409, 415)}}},
            "/api/v1/runs/{run_id}/transcript": {"get": {
                "summary": "The run as Markdown", "operationId": "runTranscript", "parameters": [run_id],
                "responses": {"200": {"description": "Markdown", "content": {"text/markdown": {"schema": {"type": "string"}}}},
                              **_errors(401, 403, 404)}}},
            "/api/v1/triage": triage_path(_errors),
        },
    }
