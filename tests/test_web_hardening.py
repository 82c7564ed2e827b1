"""Attacks on the web layer that used to work, each kept here failing: open redirects, framing,
DNS rebinding, replayed cookies, runs readable by anyone, and inputs that gave 500s."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest

from kb.errors import BadRequest, ConfigError
from kb.web.auth import Identity, new_token, token_digest
from tests.server import Server


@pytest.fixture
def secured(app_factory, runbooks_dir, pg):
    """Targets `t` (operators) and `secret` (admins only), one token per role."""
    app = app_factory(runbooks_dir=str(runbooks_dir),
                      targets={"t": {"dsn": pg.dsn("monitor")},
                               "secret": {"dsn": pg.dsn("monitor"), "roles": ["admin"]}})
    store = app.extensions["kb"].runs.store
    tokens = {}
    for role in ("reader", "operator", "admin"):
        tokens[role] = new_token()
        store.add_token(role[:4] + "0001", f"{role}-user", role, token_digest(tokens[role]))
    app.extensions["kb_access"]._tokens_cached = (0.0, False)
    return app, tokens


def login(c, token: str, nxt: str = ""):
    page = c.get("/login").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    return c.post(f"/login{nxt}", data={"token": token, "csrf_token": csrf}), csrf


def bearer(tokens, who):
    return {} if who == "anonymous" else {"Authorization": f"Bearer {tokens[who]}"}


@pytest.mark.parametrize("nxt", ["/%09/evil.example", "/%0a/evil.example", "//evil.example", "/\\evil.example",
                                 "https://evil.example/", "/%0d%0aSet-Cookie:x=1", "/\x7f/evil.example",
                                 "/%C2%85/evil.example"])
def test_login_never_redirects_off_site(secured, nxt):
    app, tokens = secured
    c = app.test_client()
    r, _ = login(c, tokens["reader"], f"?next={nxt}")
    assert r.status_code == 302 and r.headers["Location"] == "/", r.headers.get("Location")


def test_login_follows_a_plain_path(secured):
    app, tokens = secured
    r, _ = login(app.test_client(), tokens["reader"], "?next=/runs?x=1")
    assert r.headers["Location"] == "/runs?x=1"


def test_a_cookie_copied_before_logout_stops_working(secured):
    app, tokens = secured
    c = app.test_client()
    _, csrf = login(c, tokens["operator"])
    cookie = c.get_cookie("kb_session").value
    assert c.get("/api/v1/targets").get_json()["count"] == 1
    assert c.post("/logout", data={"csrf_token": csrf}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("kb_session", cookie)
    assert thief.get("/api/v1/targets").get_json()["count"] == 0  # anonymous again
    assert thief.post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"}).status_code == 401


def test_sign_out_ends_the_session_on_every_app_sharing_the_store(app_factory, store_url):
    """The ended session is recorded in the run store (SQLite and PostgreSQL), so another worker or
    host sharing it refuses the replayed cookie too."""
    one, other = (app_factory(store_url=store_url, secret_key="shared") for _ in range(2))
    token = new_token()
    one.extensions["kb"].runs.store.add_token("oper0001", "operator-user", "operator", token_digest(token))
    for app in (one, other):
        app.extensions["kb_access"]._tokens_cached = (0.0, False)
    c = one.test_client()
    _, csrf = login(c, token)
    cookie = c.get_cookie("kb_session").value
    replay = other.test_client()
    replay.set_cookie("kb_session", cookie)
    assert "operator-user" in replay.get("/login").get_data(as_text=True)
    c.post("/logout", data={"csrf_token": csrf})
    for app in (one, other):
        thief = app.test_client()
        thief.set_cookie("kb_session", cookie)
        page = thief.get("/login").get_data(as_text=True)
        assert "operator-user" not in page and "(not signed in)" in page


def test_security_headers_on_pages_api_and_errors(read_app):
    c = read_app.test_client()
    for url in ("/", "/api/v1/entries", "/nope", "/static/kb.css"):
        with c.get(url) as r:
            h = r.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"] and "default-src 'self'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "same-origin"


def test_local_operator_mode_answers_only_loopback_hosts(app_factory, runbooks_dir, pg):
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    c = app.test_client()
    for host in ("localhost", "127.0.0.1:8080", "[::1]:8080", "kb.localhost"):
        assert c.get("/api/v1/targets", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example"):
        r = c.post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"}, headers={"Host": host})
        assert r.status_code == 421 and r.get_json()["errors"][0]["field"] == "Host", host
    assert not app.extensions["kb"].runs.store.recent(10)


def test_runs_are_visible_only_to_those_allowed_on_their_target(secured):
    app, tokens = secured
    c = app.test_client()
    ids = {}
    for target in ("t", "secret"):
        r = c.post("/api/v1/runs", json={"runbook": "probe-action", "target": target}, headers=bearer(tokens, "admin"))
        assert r.status_code == 201
        ids[target] = r.get_json()["id"]
    seen = {who: {r["target"] for r in c.get("/api/v1/runs", headers=bearer(tokens, who)).get_json()["runs"]}
            for who in ("anonymous", "reader", "operator", "admin")}
    assert seen == {"anonymous": set(), "reader": set(), "operator": {"t"}, "admin": {"t", "secret"}}
    for who in ("anonymous", "reader", "operator"):
        for url in (f"/api/v1/runs/{ids['secret']}", f"/runs/{ids['secret']}", f"/runs/{ids['secret']}.json",
                    f"/runs/{ids['secret']}/transcript.md", f"/api/v1/runs/{ids['secret']}/transcript"):
            r = c.get(url, headers=bearer(tokens, who))
            assert r.status_code == 404 and "secret" not in r.get_data(as_text=True), (who, url)
        assert "secret" not in c.get("/runs", headers=bearer(tokens, who)).get_data(as_text=True)
    assert c.get(f"/api/v1/runs/{ids['t']}", headers=bearer(tokens, "operator")).status_code == 200
    r = c.post(f"/api/v1/runs/{ids['secret']}/advance", json={}, headers=bearer(tokens, "operator"))
    assert r.status_code == 404 and "secret" not in r.get_data(as_text=True)


@pytest.mark.parametrize("role", ["admin", "operator", "root"])
def test_anonymous_role_above_reader_is_refused_at_load(app_factory, tmp_path, role):
    from kb.settings import load_config

    with pytest.raises(ConfigError, match=f"KB_ANONYMOUS_ROLE: anonymous_role: '{role}' is not one of none, reader"):
        load_config({"config": None}, environ={"KB_ANONYMOUS_ROLE": role})
    toml = tmp_path / "kb.toml"
    toml.write_text(f'anonymous_role = "{role}"\n')
    with pytest.raises(ConfigError, match="anonymous_role"):
        load_config({"config": str(toml)}, environ={})
    with pytest.raises(ConfigError, match="KB_ANONYMOUS_ROLE"):
        app_factory(anonymous_role=role)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_non_finite_floats_are_refused(app_factory, runbooks_dir, pg, value):
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    rb = next(r for r in app.extensions["kb"].catalog.runbooks.values()
              if any(p.type == "float" for p in r.params.values()))
    name = next(n for n, p in rb.params.items() if p.type == "float")
    r = app.test_client().post("/api/v1/runs", json={"runbook": rb.id, "target": "t", "params": {name: value}})
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.get_json()["errors"][0]["field"].endswith(name)


def test_hostile_bodies_get_a_4xx_in_the_error_shape(app_factory, runbooks_dir, pg):
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    c = app.test_client()
    nested = "[" * 100_000 + "]" * 100_000
    bodies = [('{"text": ' + nested + "}", "/api/v1/search"),
              ('{"runbook": "probe-param", "target": "t", "params": {"name": "\\ud800"}}', "/api/v1/runs"),
              ('{"text": "deadlock \\udfff detected"}', "/api/v1/search"),
              ('{"runbook": "probe-param\\ud800", "target": "t"}', "/api/v1/runs")]
    for raw, url in bodies:
        r = c.post(url, data=raw, content_type="application/json")
        assert 400 <= r.status_code < 500, (raw[:60], r.status_code)
        assert set(r.get_json()) == {"ok", "status", "error", "errors"}
    r = c.get("/runs")
    assert r.status_code == 200
    assert login(c, "x", "?next=/%0a")[0].status_code == 401


def test_a_lone_surrogate_is_never_stored_whatever_the_surface(app_factory, runbooks_dir, pg):
    """The CLI and chat start runs without a JSON body; the parameter check itself refuses it."""
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    with pytest.raises(BadRequest) as exc:
        app.extensions["kb"].runs.start("probe-param", "t", {"name": "ab\udcff"}, Identity("op", "operator", "token"))
    assert exc.value.errors == [{"field": "params.name", "reason": "holds a lone UTF-16 surrogate, which is not text"}]
    assert app.extensions["kb"].runs.store.recent(10) == []
    assert app.test_client().get("/runs").status_code == 200


def test_aligned_markdown_tables_need_no_inline_style():
    from kb.knowledge.loader import parse_body

    _, sections, _ = parse_body("x.md", "## Quick fix\n| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n", 1)
    html = sections["quick-fix"].html
    assert "style=" not in html
    assert '<th class="align-left">a</th>' in html and '<td class="align-right">3</td>' in html


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("hardening"))
    srv.start()
    yield srv
    srv.stop()


def _raw(server, path: str, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    status, ctype, body = resp.status, resp.getheader("Content-Type"), resp.read()
    assert resp.getheader("X-Content-Type-Options") == "nosniff" and resp.getheader("X-Frame-Options") == "DENY"
    conn.close()
    assert ctype == "application/json", body[:200]
    return status, json.loads(body)


def test_over_long_urls_and_headers_get_the_error_shape(server):
    status, body = _raw(server, "/search?q=" + "a" * 9000)
    assert status == 414 and body["status"] == 414 and "POST" in body["error"]
    status, body = _raw(server, "/", {"X-Long": "a" * 9000})
    assert status == 431 and body["ok"] is False
    assert set(body) == {"ok", "status", "error", "errors"}


def test_search_form_posts_a_6kb_paste(server):
    paste = ("ERROR:  deadlock detected\nDETAIL:  Process 101 waits for ShareLock on transaction 5; blocked by process 103.\n"
             + "\n".join(f"    at com.example.Service.method{i}(Service.java:{i})" for i in range(150)))
    assert len(paste) > 6000
    data = urllib.parse.urlencode({"q": paste}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/search", body=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    html = resp.read().decode()
    conn.close()
    assert resp.status == 200 and "/errors/deadlock-detected" in html
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/search", body=b"q=deadlock+detected", headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 303 and resp.getheader("Location").startswith("/search?q=deadlock")


def test_a_short_non_ascii_paste_is_not_redirected_to_an_over_long_url(read_app):
    """600 letters are 5 KB of percent-encoded URL: too long to share, so the results come at once."""
    c = read_app.test_client()
    r = c.post("/search", data={"q": "ОШИБКА:  обнаружена взаимоблокировка " * 16})
    assert r.status_code == 200 and "взаимоблокировка" in r.get_data(as_text=True)
    r = c.post("/search", data={"q": "ОШИБКА:  обнаружена взаимоблокировка"})
    assert r.status_code == 303 and len(r.headers["Location"]) < 2000


@pytest.mark.parametrize("table", ["users", "chat_users"])
def test_an_unknown_role_in_a_users_table_is_refused_at_load(tmp_path, table):
    from kb.settings import load_config

    toml = tmp_path / "kb.toml"
    toml.write_text(f'[{table}]\nalice = "superuser"\n')
    with pytest.raises(ConfigError, match=f"{table}.alice: 'superuser' is not one of none, reader, operator, admin"):
        load_config({"config": str(toml)}, environ={})
