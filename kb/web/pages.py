"""HTML pages of the knowledge base (and their .json twins): home, search, entries, catalog messages,
SQLSTATEs, runbooks."""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from kb.web import auth
from kb.web.graph import runbook_graph
from kb.web.present import limit_arg, present, service

bp = Blueprint("pages", __name__, template_folder="../templates")
SHAREABLE_URL = 2000  # bytes of URL that fit under every server's and browser's limit


# The errors people hit most in an incident, shown on the home page under the search box (browsing is /errors).
COMMON_ERRORS = ("too-many-clients", "password-authentication-failed", "connection-refused", "deadlock-detected",
                 "relation-does-not-exist", "duplicate-key-unique-constraint", "could-not-extend-file-no-space",
                 "idle-in-transaction-timeout")


@bp.get("/")
@bp.get("/index.json")
def index():
    """The page for an incident: the paste box first, then the most common errors and the runbooks."""
    svc = service()
    entries = svc.entries()["entries"]
    by_slug = {e["slug"]: e for e in entries}
    data = {"count": len(entries), "common": [by_slug[s] for s in COMMON_ERRORS if s in by_slug],
            "runbooks": svc.runbooks()["runbooks"]}
    return present("pages/index.html", data, json_path="/index.json", cache_key="index")


@bp.get("/search")
@bp.get("/search.json")
@bp.post("/search")
def search():
    """GET for links and the header box; the paste box POSTs, since a pasted log outgrows a URL."""
    q = request.form.get("q", "") if request.method == "POST" else request.args.get("q", "")
    if request.method == "POST" and q.strip():
        url = url_for("pages.search", q=q)  # percent-encoded: a non-ASCII letter takes up to 12 bytes
        if len(url) <= SHAREABLE_URL:
            return redirect(url, code=303)  # a short query gets a shareable URL
    if not q.strip() and not request.path.endswith(".json"):
        return present("pages/search.html", {"query": "", "count": 0, "results": []})
    auth.rate_limit("search")  # the same per-identity limit as the API's search
    data = service().search_text(q, limit=limit_arg())
    return present("pages/search.html", data, pasted=q)  # the box keeps the whole paste; data.query is cut


@bp.get("/errors")
@bp.get("/errors.json")
def entries():
    args = {k: request.args.get(k) or None for k in ("engine", "tag", "sqlstate")}
    data = service().entries(**args, text=request.args.get("filter", "")[:200])
    return present("pages/entries.html", data)


@bp.get("/errors/<slug>")
@bp.get("/errors/<slug>.json")
def entry(slug: str):
    data = service().entry(slug)
    return present("pages/entry.html", data, json_path=f"/errors/{slug}.json", cache_key=f"entry:{slug}")


@bp.get("/messages/<mid>")
@bp.get("/messages/<mid>.json")
def message(mid: str):
    # not cached like the entries: ~11,800 messages would keep every page any crawler asked for
    return present("pages/message.html", service().message(mid), json_path=f"/messages/{mid}.json")


@bp.get("/sqlstates")
@bp.get("/sqlstates.json")
def sqlstates():
    return present("pages/sqlstates.html", service().sqlstates(), json_path="/sqlstates.json", cache_key="sqlstates")


@bp.get("/sqlstates/<code>")
@bp.get("/sqlstates/<code>.json")
def sqlstate(code: str):
    data = service().sqlstate(code)  # NotFound before anything is cached: at most one page per known code
    return present("pages/sqlstate.html", data, json_path=f"/sqlstates/{code}.json", cache_key=f"sqlstate:{code}")


@bp.get("/runbooks")
@bp.get("/runbooks.json")
def runbooks():
    return present("pages/runbooks.html", service().runbooks(), cache_key="runbooks")


@bp.get("/runbooks/<rid>")
@bp.get("/runbooks/<rid>.json")
def runbook(rid: str):
    svc = service()
    data = svc.runbook(rid)
    graph = None if request.path.endswith(".json") else runbook_graph(svc.catalog.runbooks[rid])
    return present("pages/runbook.html", data, json_path=f"/runbooks/{rid}.json", cache_key=f"runbook:{rid}",
                   graph=graph)


@bp.route("/triage", methods=["GET", "POST"])
@bp.route("/triage.json", methods=["GET", "POST"])
def triage():
    """A whole log dropped or pasted: what went wrong in it (the page posts the file as the raw body)."""
    from kb.web.triage import chart, page_data, run_upload, sparkline

    report = None
    if request.method == "POST":
        auth.rate_limit("search")  # the same per-identity limit as a search
        report = run_upload()
    return present("pages/triage.html", page_data(report), json_path="/triage.json",
                   chart=chart(report) if report else None, sparkline=sparkline)


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page links to: the SVG icon, cached for a day."""
    from pathlib import Path

    from flask import Response, current_app

    body = (Path(current_app.static_folder) / "favicon.svg").read_bytes()
    return Response(body, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


@bp.get("/healthz")
def healthz():
    from kb.web.present import json_response

    return json_response({"ok": True})
