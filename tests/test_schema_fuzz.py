"""schemathesis against /api/v1/openapi.json: no 5xx, and every error in the one shape."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, index_dir, pg):
    from tests.conftest import make_config
    from kb.web.app import create_app

    app = create_app(make_config(tmp_path_factory.mktemp("fuzz"), index_dir, rate_search="100000/1",
                                 rate_runs="100000/1", targets={"default": {"dsn": pg.dsn("monitor")}}))
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_errors_have_one_shape(case):
    response = case.call()
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"ok", "status", "error", "errors"}, body
        assert body["ok"] is False and body["status"] == response.status_code
