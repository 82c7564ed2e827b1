"""The run store coordinates every worker and host: concurrent confirms of one action, sent to two
`kb serve` processes (one with two workers) sharing one PostgreSQL store, run the action once; steps
the client did not see are refused with 409."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from tests.server import Server


def call(url, method, path, body=None, token=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def storm(urls, path, bodies, token):
    """POST each body at once, spread over the servers; returns the (status, json) of each."""
    results = [None] * len(bodies)
    gate = threading.Barrier(len(bodies))

    def one(i):
        gate.wait()
        results[i] = call(urls[i % len(urls)], "POST", path, bodies[i], token)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory, pg, store_cluster, runbooks_dir_module):
    pg.sql("CREATE TABLE IF NOT EXISTS public.hits (tag text)")
    store_cluster.sql("CREATE DATABASE coordination")
    toml = f'[targets.t]\ndsn = "{pg.dsn("postgres")}"\ncap = 1\n'
    env = {"KB_STORE_URL": store_cluster.url("postgres", "coordination"), "KB_RUNBOOKS_DIR": str(runbooks_dir_module)}
    a = Server(tmp_path_factory.mktemp("host-a"), toml, env=env, workers=2)
    b = Server(tmp_path_factory.mktemp("host-b"), toml, env=env, workers=1)
    token = a.token("boss", "admin")
    try:
        a.start()
        b.start()
        yield [a.url, b.url], token
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def runbooks_dir_module(tmp_path_factory):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    d = tmp_path_factory.mktemp("runbooks")
    shutil.copytree(root / "runbooks", d, dirs_exist_ok=True)
    for f in (root / "tests" / "fixtures" / "runbooks").glob("*.yaml"):
        shutil.copy(f, d)
    return d


@pytest.mark.parametrize("trial", range(5))
def test_twenty_concurrent_confirms_on_two_hosts_run_the_action_once(two_hosts, pg, store_cluster, trial):
    urls, token = two_hosts
    tag = f"trial-{trial}"
    status, run = call(urls[0], "POST", "/api/v1/runs",
                       {"runbook": "probe-once", "target": "t", "params": {"tag": tag}, "auto": True}, token)
    assert status == 201 or status == 200, run
    assert run["current"]["id"] == "act"
    # half the clients say which step they saw, half do not: neither kind may run the action twice
    bodies = [{"confirm": True, "step": "act"} if i % 2 else {"confirm": True} for i in range(20)]
    results = storm(urls, f"/api/v1/runs/{run['id']}/advance", bodies, token)
    codes = sorted(code for code, _ in results)
    assert codes.count(200) == 1 and codes.count(409) == 19, codes
    assert all(body["ok"] is False and body["status"] == 409 for code, body in results if code == 409)
    assert pg.sql("SELECT count(*) FROM public.hits WHERE tag = %s", (tag,))[0][0] == 1
    _, final = call(urls[1], "GET", f"/api/v1/runs/{run['id']}", token=token)
    assert final["status"] == "finished"
    assert [s["step_id"] for s in final["steps"] if s["kind"] == "action"] == ["act"]
    events = [e for (e,) in store_cluster.sql("SELECT event FROM audit WHERE run_id = %s", (run["id"],),
                                              dbname="coordination")]
    assert events.count("claim") == 1 and events.count("confirm") == 1, events


def test_twenty_advances_that_saw_one_step_run_it_once(two_hosts):
    urls, token = two_hosts
    _, run = call(urls[0], "POST", "/api/v1/runs", {"runbook": "probe-once", "target": "t"}, token)
    assert run["current"]["id"] == "look"
    results = storm(urls, f"/api/v1/runs/{run['id']}/advance", [{"step": "look"}] * 20, token)
    codes = sorted(code for code, _ in results)
    assert codes.count(200) == 1 and codes.count(409) == 19, codes
    _, final = call(urls[1], "GET", f"/api/v1/runs/{run['id']}", token=token)
    assert [s["step_id"] for s in final["steps"]] == ["look", "act"]
    assert final["current"]["id"] == "act"


def test_a_step_the_client_did_not_see_is_refused(two_hosts):
    urls, token = two_hosts
    _, run = call(urls[0], "POST", "/api/v1/runs", {"runbook": "probe-once", "target": "t", "auto": True}, token)
    code, body = call(urls[1], "POST", f"/api/v1/runs/{run['id']}/advance", {"step": "look"}, token)
    assert code == 409
    assert "no longer current" in body["error"] and "'act'" in body["error"]


def test_the_connection_cap_holds_across_workers_and_hosts(two_hosts, pg):
    """cap = 1 on the target; runs fired at three worker processes on two servers at once never
    open a second connection to it: they wait their turn in the store."""
    from kb.scenarios import ConnectionWatch

    urls, token = two_hosts
    bodies = [{"runbook": "probe-sleep", "target": "t", "params": {"seconds": 0.3}, "auto": True}] * 6
    with ConnectionWatch(pg.dsn("postgres")) as watch:
        results = storm(urls, "/api/v1/runs", bodies, token)
    assert all(code in (200, 201) for code, _ in results), results
    assert [run["conclusion"]["step_id"] for _, run in results] == ["done"] * 6
    assert watch.peak == 1


def test_rate_limits_are_counted_in_the_store_across_processes(app_factory, runbooks_dir, store_url):
    """Two apps on one store (as two workers or hosts are): the third search of one identity, sent to
    the other app, is still the third; the page search counts too."""
    kw = {"runbooks_dir": str(runbooks_dir), "rate_search": "3/60", "store_url": store_url}
    one, two = app_factory(**kw).test_client(), app_factory(**kw).test_client()
    codes = [one.get("/api/v1/search?q=deadlock").status_code, two.get("/api/v1/search?q=deadlock").status_code,
             one.get("/search?q=deadlock").status_code, two.get("/search.json?q=deadlock").status_code,
             one.post("/api/v1/search", json={"q": "deadlock"}).status_code]
    assert codes == [200, 200, 200, 429, 429]
