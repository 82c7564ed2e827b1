"""schemathesis against /api/v1/openapi.json: no 5xx, and every error in the one shape.

Each operation of the description is its own test, driven by schemathesis' hypothesis strategy
through plain `@given` (its pytest plugin reaches into pytest's private node attributes).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from kb.web.openapi import spec  # noqa: E402

OPERATIONS = [(method.upper(), path) for path, item in spec()["paths"].items() for method in item
              if method in ("get", "post", "put", "patch", "delete")]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, index_dir, pg):
    from tests.conftest import make_config
    from kb.web.app import create_app

    app = create_app(make_config(tmp_path_factory.mktemp("fuzz"), index_dir, rate_search="100000/1",
                                 rate_runs="100000/1", targets={"default": {"dsn": pg.dsn("monitor")}}))
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_never_fails_and_errors_have_one_shape(api_schema, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call()
        assert response.status_code < 500, response.text[:500]
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"ok", "status", "error", "errors"}, body
            assert body["ok"] is False and body["status"] == response.status_code

    check()
