"""The run pages: start form, the stepper at /runs/<id>, history, transcript download."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request

from kb.errors import BadRequest
from kb.web import auth
from kb.web.graph import run_graph
from kb.web.present import present, service

bp = Blueprint("runs", __name__, template_folder="../templates")


@bp.get("/runs")
@bp.get("/runs.json")
def history():
    ident = auth.require("reader")
    return present("runs/list.html", service().runs.recent(ident, limit=50))


@bp.get("/runs/new")
def new():
    svc = service()
    rid = request.args.get("runbook", "")
    rb = svc.runbook(rid)
    ident = auth.current()
    targets = svc.runs.targets_for(ident, rb["target_kind"])["targets"] if ident.can("operator") else []
    return render_template("runs/new.html", rb=rb, targets=targets, entry=request.args.get("entry"),
                           errors=[], values={})


@bp.post("/runs")
def start():
    svc = service()
    rid = request.form.get("runbook", "")
    rb = svc.runbook(rid)
    ident = auth.require("operator")
    auth.rate_limit("runs")
    params = {k[6:]: v for k, v in request.form.items() if k.startswith("param.")}
    for name, p in rb["params"].items():  # unchecked checkboxes are absent from the form
        if p["type"] == "bool" and name not in params:
            params[name] = "false"
    try:
        run = svc.runs.start(rid, request.form.get("target", ""), params, ident, auto=False)
    except BadRequest as exc:
        targets = svc.runs.targets_for(ident, rb["target_kind"])["targets"]
        return render_template("runs/new.html", rb=rb, targets=targets, entry=request.form.get("entry"),
                               errors=exc.errors or [{"field": "", "reason": exc.error}], values=params), 400
    return redirect(f"/runs/{run['id']}", code=303)


@bp.get("/runs/<run_id>")
@bp.get("/runs/<run_id>.json")
def show(run_id: str):
    ident = auth.require("reader")
    svc = service()
    run = svc.runs.get(run_id, ident)
    rb = svc.catalog.runbooks.get(run["runbook"]["id"])
    graph = run_graph(rb, run) if rb is not None and not request.path.endswith(".json") else None
    return present("runs/run.html", run, json_path=f"/runs/{run_id}.json", graph=graph)


@bp.post("/runs/<run_id>/advance")
def advance(run_id: str):
    ident = auth.require("operator")
    form = request.form
    answer = form.get("answer") or None
    confirm = None
    if "confirm" in form:
        confirm = form.get("confirm") == "yes"
        if confirm and form.get("understood") != "yes" and not form.get("js"):
            raise BadRequest("tick the box to confirm you have read what this action will affect",
                             [{"field": "understood", "reason": "required to confirm"}])
    service().runs.advance(run_id, ident, answer=answer, confirm=confirm, auto=form.get("auto") == "yes",
                           step=form.get("step") or None)
    return redirect(f"/runs/{run_id}#current", code=303)


@bp.get("/runs/<run_id>/transcript.md")
def transcript(run_id: str):
    ident = auth.require("reader")
    text = service().runs.transcript(run_id, ident, request.host_url.rstrip("/"))
    return Response(text, mimetype="text/markdown",  # werkzeug adds "; charset=utf-8" to text/*
                    headers={"Content-Disposition": f'attachment; filename="kb-run-{run_id}.md"'})
