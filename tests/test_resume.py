"""A kb server killed (SIGKILL) mid-run loses no finished step; a restarted one resumes the run."""

from __future__ import annotations

import json
import urllib.request

from kb import scenarios
from tests.server import Server


def call(server, method, path, body=None, token=None):
    req = urllib.request.Request(server.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_killed_server_resumes_the_run(tmp_path, store_url):
    cluster, holder = scenarios.start("connections-many-idle")
    target = scenarios.SCENARIOS["connections-many-idle"].target(cluster)
    toml = f'[targets.prod]\ndsn = "{target["dsn"]}"\n'
    env = {"KB_STORE_URL": store_url} if store_url else {}
    server = Server(tmp_path, toml, env=env)
    token = server.token("ops", "operator")
    try:
        server.start()
        run = call(server, "POST", "/api/v1/runs", {"runbook": "connection-exhaustion", "target": "prod"}, token)
        run = call(server, "POST", f"/api/v1/runs/{run['id']}/advance", {}, token)
        run = call(server, "POST", f"/api/v1/runs/{run['id']}/advance", {}, token)
        before = [s["step_id"] for s in run["steps"]]
        assert before == ["slots", "holders"] and run["current"]["id"] == "pool-question"
        server.kill()

        server.start()
        again = call(server, "GET", f"/api/v1/runs/{run['id']}", token=token)
        assert [s["step_id"] for s in again["steps"]] == before
        assert again["steps"] == run["steps"]
        assert again["current"]["id"] == "pool-question"
        done = call(server, "POST", f"/api/v1/runs/{run['id']}/advance", {"answer": "app-servers"}, token)
        assert done["status"] == "finished" and done["conclusion"]["step_id"] == "pool-math"
    finally:
        server.stop()
        holder.close()
        cluster.destroy()
