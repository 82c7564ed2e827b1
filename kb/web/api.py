"""The versioned JSON API under /api/v1 (described by /api/v1/openapi.json)."""

from __future__ import annotations

import json

from flask import Blueprint, request
from pydantic import BaseModel, ValidationError

from kb.errors import ApiError, BadRequest
from kb.web import auth
from kb.web.bodies import AdvanceBody, SearchBody, StartRunBody
from kb.web.errors import validation_errors
from kb.web.openapi import spec
from kb.web.present import json_response, limit_arg, service
from kb.web.responses import Entry, EntryList, Runbook, RunbookList, RunList, TargetList, sent

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def body(model: type[BaseModel], allow_empty: bool = False) -> BaseModel:
    """The request's JSON body validated by `model`; 415/400 in the one error shape otherwise."""
    raw = request.get_data(cache=True)
    if not raw.strip() and allow_empty:
        return model()
    if not request.is_json:
        raise ApiError(415, "send a JSON body with Content-Type: application/json")
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("the body nests too deeply") from None
    if data is None:
        raise BadRequest("the body is not valid JSON")
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # JSON allows "\ud800"; no text kb stores or sends may hold it
        raise BadRequest("the body holds a lone UTF-16 surrogate (an escape such as \\ud800 without its pair)") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("invalid request body", validation_errors(exc)) from None
    except RecursionError:
        raise BadRequest("the body nests too deeply") from None


@bp.get("/search")
def search_get():
    auth.rate_limit("search")
    return json_response(service().search_text(request.args.get("q", ""), limit=limit_arg()))


@bp.post("/search")
def search_post():
    auth.rate_limit("search")
    b = body(SearchBody)
    return json_response(service().search_text(b.text, limit=b.limit))


@bp.get("/entries")
def entries():
    args = {k: request.args.get(k) or None for k in ("engine", "tag", "sqlstate")}
    return json_response(sent(EntryList, service().entries(**args)))


@bp.get("/entries/<slug>")
def entry(slug: str):
    return json_response(sent(Entry, service().entry(slug)))


@bp.get("/messages/<mid>")
def message(mid: str):
    return json_response(service().message(mid))


@bp.get("/sqlstates")
def sqlstates():
    return json_response(service().sqlstates())


@bp.get("/sqlstates/<code>")
def sqlstate(code: str):
    return json_response(service().sqlstate(code))


@bp.get("/runbooks")
def runbooks():
    return json_response(sent(RunbookList, service().runbooks()))


@bp.get("/runbooks/<rid>")
def runbook(rid: str):
    return json_response(sent(Runbook, service().runbook(rid)))


@bp.get("/targets")
def targets():
    ident = auth.current()
    return json_response(sent(TargetList, service().runs.targets_for(ident)))


@bp.get("/runs")
def runs_list():
    ident = auth.require("reader")
    return json_response(sent(RunList, service().runs.recent(ident, limit=limit_arg())))


@bp.post("/runs")
def runs_start():
    b = body(StartRunBody)
    ident = auth.require("operator")
    auth.rate_limit("runs")
    run = service().runs.start(b.runbook, b.target, b.params, ident, auto=b.auto)
    resp = json_response(run, status=201)
    resp.headers["Location"] = f"/api/v1/runs/{run['id']}"
    return resp


@bp.get("/runs/<run_id>")
def runs_get(run_id: str):
    ident = auth.require("reader")
    return json_response(service().runs.get(run_id, ident))


@bp.post("/runs/<run_id>/advance")
def runs_advance(run_id: str):
    b = body(AdvanceBody, allow_empty=True)
    ident = auth.require("operator")
    return json_response(service().runs.advance(run_id, ident, answer=b.answer, confirm=b.confirm, auto=b.auto,
                                                   step=b.step))


@bp.get("/runs/<run_id>/transcript")
def runs_transcript(run_id: str):
    from flask import Response

    ident = auth.require("reader")
    return Response(service().runs.transcript(run_id, ident, request.host_url.rstrip("/")),
                    mimetype="text/markdown")  # werkzeug adds "; charset=utf-8" to text/*


@bp.post("/triage")
def triage():
    from kb.web.triage import run_upload

    auth.rate_limit("search")
    return json_response(run_upload())


@bp.get("/openapi.json")
def openapi():

    return json_response(spec())
