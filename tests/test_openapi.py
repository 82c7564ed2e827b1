"""The OpenAPI document describes what the API sends: real responses validate against its schemas."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest

from kb.web.openapi import spec

# (documented path, real URL): every entry and runbook is checked by test_every_entry_and_runbook
ENDPOINTS = [
    ("/api/v1/entries", "/api/v1/entries"),
    ("/api/v1/entries", "/api/v1/entries?engine=pgbouncer&tag=pooling"),
    ("/api/v1/entries/{slug}", "/api/v1/entries/too-many-clients"),
    ("/api/v1/runbooks", "/api/v1/runbooks"),
    ("/api/v1/runbooks/{id}", "/api/v1/runbooks/connection-exhaustion"),
    ("/api/v1/targets", "/api/v1/targets"),
    ("/api/v1/runs", "/api/v1/runs"),
    ("/api/v1/runs/{run_id}", "/api/v1/runs/{run}"),
]


def validator(path: str, method: str = "get", status: str = "200"):
    """A JSON Schema validator for the documented JSON response, its references resolved in the document."""
    doc = spec()
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def problems(path: str, data) -> list[str]:
    return [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator(path).iter_errors(data)]


@pytest.fixture(scope="module")
def run_client(tmp_path_factory, index_dir):
    """A client of an app with one finished run: on a target where no server listens, so it concluded."""
    from tests.conftest import make_config
    from kb.web.app import create_app

    tmp = tmp_path_factory.mktemp("openapi")
    sockets = tmp / "no-server-here"
    sockets.mkdir()
    app = create_app(make_config(tmp, index_dir, targets={
        "nowhere": {"dsn": f"host={sockets} port=5432 dbname=app user=app", "description": "no server listens"}}))
    client = app.test_client()
    r = client.post("/api/v1/runs", json={"runbook": "connection-exhaustion", "target": "nowhere", "auto": True})
    assert r.status_code == 201, r.get_data(as_text=True)
    run = r.get_json()
    assert run["status"] == "finished" and run["outcome"] == "inconclusive" and run["steps"], run
    client.run_id = run["id"]
    return client


@pytest.mark.parametrize("path,url", ENDPOINTS, ids=[u for _, u in ENDPOINTS])
def test_real_responses_match_the_documented_schema(run_client, path, url):
    r = run_client.get(url.format(run=run_client.run_id))
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert problems(path, data) == []
    if path in ("/api/v1/targets", "/api/v1/runs"):
        assert data["count"] == 1  # not vacuously valid: one item was checked


def test_every_entry_and_runbook_matches_the_documented_schema(client):
    entries = client.get("/api/v1/entries").get_json()["entries"]
    runbooks = client.get("/api/v1/runbooks").get_json()["runbooks"]
    found = {}
    for path, urls in (("/api/v1/entries/{slug}", [e["url"].replace("/errors/", "/api/v1/entries/") for e in entries]),
                       ("/api/v1/runbooks/{id}", [f"/api/v1/runbooks/{rb['id']}" for rb in runbooks])):
        check = validator(path)
        for url in urls:
            errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in check.iter_errors(client.get(url).get_json())]
            if errors:
                found[url] = errors[:3]
    assert found == {}
    assert len(entries) > 100 and len(runbooks) > 10


@pytest.mark.parametrize("path,data,where", [
    ("/api/v1/targets", {"count": 1, "targets": [{"name": "db", "description": "", "kind": "postgresql", "cap": 1,
                                                   "roles": ["operator"], "reserved_connection": False,
                                                   "dsn": "postgresql://app:secret@db/app"}]}, "targets/0"),
    ("/api/v1/runs", {"count": 1, "runs": [{"id": "r1"}]}, "runs/0"),
    ("/api/v1/entries", {"filters": {}, "facets": {}, "count": "many", "entries": []}, "count"),
])
def test_the_schemas_refuse_what_the_api_must_not_send(path, data, where):
    assert any(p.startswith(where + ":") for p in problems(path, data)), problems(path, data)


def _resolve(schema: dict, doc: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_no_success_response_is_a_bare_object(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc == json.loads(json.dumps(spec()))
    bare = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                for media, content in resp.get("content", {}).items():
                    schema = _resolve(content["schema"], doc)
                    if status.startswith("2") and schema.get("type") == "object" and not schema.get("properties"):
                        bare.append(f"{method.upper()} {path} {status} {media}")
    assert bare == []


def test_every_reference_in_the_document_resolves():
    doc = spec()
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    names = {r.rsplit("/", 1)[1] for r in refs}
    assert all(r.startswith("#/components/schemas/") for r in refs), refs
    assert names - set(doc["components"]["schemas"]) == set()
