"""The JSON API contract: shapes, status codes, the one error shape, OpenAPI, .json twins."""

from __future__ import annotations

import pytest


def assert_error_shape(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"ok", "status", "error", "errors"}
    assert body["ok"] is False and body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["errors"], list)
    return body


def test_search_get_and_post_agree(client):
    paste = "ERROR:  deadlock detected\nDETAIL:  Process 1 waits for ShareLock on transaction 2"
    got = client.get("/api/v1/search", query_string={"q": paste}).get_json()
    posted = client.post("/api/v1/search", json={"text": paste}).get_json()
    assert got["results"] == posted["results"]
    assert got["results"][0]["slug"] == "deadlock-detected"


@pytest.mark.parametrize("method,url,kwargs,status,fragment", [
    ("get", "/api/v1/search", {}, 400, "empty query"),
    ("get", "/api/v1/search?q=%20%20", {}, 400, "empty query"),
    ("get", "/api/v1/search?q=x&limit=abc", {}, 400, "limit must be an integer"),
    ("get", "/api/v1/search?q=x&limit=500", {}, 400, "limit must be between 1 and 50"),
    ("get", "/api/v1/search?q=" + "x" * 40000, {}, 413, "the limit is 32768"),
    ("post", "/api/v1/search", {"data": "text", "content_type": "text/plain"}, 415, "Content-Type: application/json"),
    ("post", "/api/v1/search", {"data": "{bad json", "content_type": "application/json"}, 400, "not valid JSON"),
    ("post", "/api/v1/search", {"json": ["a"]}, 400, "must be a JSON object"),
    ("post", "/api/v1/search", {"json": {"txt": "x"}}, 400, "invalid request body"),
    ("post", "/api/v1/search", {"json": {"text": ""}}, 400, "invalid request body"),
    ("get", "/api/v1/entries/no-such-entry", {}, 404, "entry 'no-such-entry' not found"),
    ("get", "/api/v1/entries?engine=oracle", {}, 400, "unknown engine 'oracle'"),
    ("get", "/api/v1/runbooks/nope", {}, 404, "runbook 'nope' not found"),
    ("get", "/api/v1/runs/nope", {}, 404, "run 'nope' not found"),
    ("get", "/api/v1/nothing-here", {}, 404, "not found"),
    ("delete", "/api/v1/search", {}, 405, "method not allowed"),
    ("get", "/errors/nope.json", {}, 404, "entry 'nope' not found"),
])
def test_bad_requests_get_the_one_error_shape(client, method, url, kwargs, status, fragment):
    body = assert_error_shape(getattr(client, method)(url, **kwargs), status)
    assert fragment in body["error"]


def test_search_validation_errors_name_the_field(client):
    body = assert_error_shape(client.post("/api/v1/search", json={"text": "x", "limit": 0}), 400)
    assert body["errors"] == [{"field": "limit", "reason": "Input should be greater than or equal to 1"}]


def test_entry_is_fully_structured(client):
    e = client.get("/api/v1/entries/too-many-clients").get_json()
    assert e["sqlstates"] == ["53300"] and e["level"] == "FATAL"
    ids = [s["id"] for s in e["sections"]]
    assert ids == ["quick-fix", "causes", "fix", "why", "mistakes", "deeper", "faq"]
    fix = next(s for s in e["sections"] if s["id"] == "fix")
    assert fix["items"] and any(i["code"] for i in fix["items"])
    assert e["runbooks"][0]["id"] == "connection-exhaustion"
    assert all(r["url"].startswith("/errors/") for r in e["related"])
    assert e["sources"]


def test_entries_filter_by_engine_tag_sqlstate(client):
    all_ = client.get("/api/v1/entries").get_json()
    assert all_["count"] >= 9
    pg = client.get("/api/v1/entries?engine=pgbouncer").get_json()
    assert pg["count"] and all(e["engine"] == "pgbouncer" for e in pg["entries"])
    s = client.get("/api/v1/entries?sqlstate=53300").get_json()
    assert {"too-many-clients", "reserved-connection-slots"} <= {e["slug"] for e in s["entries"]}


def test_runbooks_listed_with_steps(client):
    rbs = client.get("/api/v1/runbooks").get_json()
    assert "connection-exhaustion" in [r["id"] for r in rbs["runbooks"]]
    rb = client.get("/api/v1/runbooks/connection-exhaustion").get_json()
    assert rb["start"] == "slots" and rb["params"]["idle_seconds"]["type"] == "int"


def test_openapi_describes_every_api_route(read_app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = {p.replace("{", "<").replace("}", ">") for p in spec["paths"]}
    routes = {r.rule for r in read_app.url_map.iter_rules() if r.rule.startswith("/api/v1/") and "openapi" not in r.rule}
    normalise = lambda s: {x.replace("<slug>", "<x>").replace("<id>", "<x>").replace("<rid>", "<x>").replace("<run_id>", "<x>") for x in s}  # noqa: E731
    assert normalise(routes) == normalise(documented)


@pytest.mark.parametrize("page", ["/", "/errors", "/errors/too-many-clients", "/runbooks", "/runbooks/connection-exhaustion",
                                  "/search?q=too+many+clients"])
def test_every_data_page_has_a_json_twin(client, page):
    resp = client.get(page)
    assert resp.status_code == 200
    link = resp.headers["Link"]
    twin = link.split(">")[0].lstrip("<")
    data = client.get(twin)
    assert data.status_code == 200 and data.is_json


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, index_dir):
    """(client, run id) of a run that concluded at once: no server listens on its target's socket."""
    from tests.conftest import make_config
    from kb.web.app import create_app

    tmp = tmp_path_factory.mktemp("transcript")
    (tmp / "sockets").mkdir()
    app = create_app(make_config(tmp, index_dir, targets={
        "nowhere": {"dsn": f"host={tmp / 'sockets'} port=5432 dbname=app user=app"}}))
    client = app.test_client()
    r = client.post("/api/v1/runs", json={"runbook": "connection-exhaustion", "target": "nowhere", "auto": True})
    assert r.status_code == 201 and r.get_json()["status"] == "finished", r.get_data(as_text=True)
    return client, r.get_json()["id"]


@pytest.mark.parametrize("url", ["/api/v1/runs/{id}/transcript", "/runs/{id}/transcript.md"])
def test_transcript_is_markdown_with_one_charset(finished_run, url):
    client, run_id = finished_run
    r = client.get(url.format(id=run_id))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert "Connection exhaustion" in r.get_data(as_text=True)
