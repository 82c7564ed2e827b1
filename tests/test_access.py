"""Access control: the role matrix with exact status codes, CSRF, token revocation, proxies, Slack, limits."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import urllib.parse
from pathlib import Path

import pytest

from kb.web.auth import Identity, new_token, token_digest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def secured(app_factory, runbooks_dir, pg):
    """An app with a target and one token per role."""
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}},
                      slack_signing_secret="s3cret", chat_users={"U1": "operator"})
    store = app.extensions["kb"].runs.store
    tokens = {}
    for role in ("reader", "operator", "admin"):
        tokens[role] = new_token()
        store.add_token(role[:4] + "0001", f"{role}-user", role, token_digest(tokens[role]))
    app.extensions["kb_access"]._tokens_cached = (0.0, False)
    return app, tokens


def headers(tokens, who):
    return {} if who == "anonymous" else {"Authorization": f"Bearer {tokens[who]}"}


WHO = ["anonymous", "reader", "operator", "admin"]


def start_run(app, tokens, runbook="probe-action"):
    c = app.test_client()
    r = c.post("/api/v1/runs", json={"runbook": runbook, "target": "t"}, headers=headers(tokens, "admin"))
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


@pytest.mark.parametrize("who,expected", list(zip(WHO, [200, 200, 200, 200])))
def test_search_and_read(secured, who, expected):
    app, tokens = secured
    c = app.test_client()
    for url in ("/api/v1/search?q=deadlock+detected", "/api/v1/entries/too-many-clients", "/errors/too-many-clients",
                "/api/v1/runbooks", "/runs"):
        assert c.get(url, headers=headers(tokens, who)).status_code == expected, url


@pytest.mark.parametrize("who,expected", list(zip(WHO, [401, 403, 201, 201])))
def test_start_run(secured, who, expected):
    app, tokens = secured
    r = app.test_client().post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"}, headers=headers(tokens, who))
    assert r.status_code == expected, r.get_json()
    if expected >= 400:
        assert r.get_json()["ok"] is False


@pytest.mark.parametrize("who,expected", list(zip(WHO, [401, 403, 200, 200])))
def test_advance_diagnostic(secured, who, expected):
    app, tokens = secured
    run_id = start_run(app, tokens)
    r = app.test_client().post(f"/api/v1/runs/{run_id}/advance", json={}, headers=headers(tokens, who))
    assert r.status_code == expected, r.get_json()


@pytest.mark.parametrize("who,expected", list(zip(WHO, [401, 403, 403, 200])))
def test_confirm_action(secured, pg, who, expected):
    app, tokens = secured
    c = app.test_client()
    run_id = start_run(app, tokens)
    assert c.post(f"/api/v1/runs/{run_id}/advance", json={}, headers=headers(tokens, "admin")).status_code == 200
    r = c.post(f"/api/v1/runs/{run_id}/advance", json={"confirm": True}, headers=headers(tokens, who))
    assert r.status_code == expected, r.get_json()
    if expected == 200:
        run = r.get_json()
        assert run["conclusion"]["step_id"] == "done"
        assert [s["actor"] for s in run["steps"] if s["kind"] == "action"] == ["admin-user"]
    else:
        events = app.extensions["kb"].runs.audit(run_id, Identity("t", "admin", "token"))
        assert events[-1]["event"] in ("confirm-refused", "preview")


@pytest.mark.parametrize("who,visible", list(zip(WHO, [0, 0, 1, 1])))
def test_targets_only_for_allowed_roles(secured, who, visible):
    app, tokens = secured
    body = app.test_client().get("/api/v1/targets", headers=headers(tokens, who)).get_json()
    assert body["count"] == visible
    assert "dsn" not in str(body) and "127.0.0.1" not in str(body)


def test_unknown_target_and_forbidden_target_look_the_same(secured):
    app, tokens = secured
    r = app.test_client().post("/api/v1/runs", json={"runbook": "probe-action", "target": "nope"}, headers=headers(tokens, "admin"))
    assert r.status_code == 404 and r.get_json()["error"] == "target 'nope' not found"


def test_revoked_token_is_refused(secured):
    app, tokens = secured
    c = app.test_client()
    assert c.get("/api/v1/runs", headers=headers(tokens, "operator")).status_code == 200
    assert app.extensions["kb"].runs.store.revoke_token("operator-user") == 1
    r = c.get("/api/v1/runs", headers=headers(tokens, "operator"))
    assert r.status_code == 401 and r.get_json()["error"] == "unknown or revoked token"
    assert c.get("/api/v1/runs", headers={"Authorization": "Basic abc"}).status_code == 401


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_browser_login_session_and_csrf(secured):
    app, tokens = secured
    c = app.test_client()
    token = _csrf(c.get("/login").get_data(as_text=True))
    assert c.post("/login", data={"token": tokens["operator"]}).status_code == 403  # no CSRF token
    r = c.post("/login", data={"token": tokens["operator"], "csrf_token": token})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = c.get("/runs/new?runbook=probe-action").get_data(as_text=True)
    csrf = _csrf(page)
    form = {"runbook": "probe-action", "target": "t"}
    assert c.post("/runs", data=form).status_code == 403
    assert c.post("/runs", data={**form, "csrf_token": "wrong"}).status_code == 403
    r = c.post("/runs", data={**form, "csrf_token": csrf})
    assert r.status_code == 303 and r.headers["Location"].startswith("/runs/")
    # the API refuses a cross-site style form post to a JSON endpoint
    assert c.post("/api/v1/runs", data=form).status_code == 415


def test_anonymous_role_none_refuses_reading(app_factory, runbooks_dir):
    app = app_factory(runbooks_dir=str(runbooks_dir), anonymous_role="none", users={"x": "reader"})
    r = app.test_client().get("/api/v1/entries")
    assert r.status_code == 401


def test_loopback_without_identities_is_a_local_operator(app_factory, runbooks_dir, pg):
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    r = app.test_client().post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"})
    assert r.status_code == 201 and r.get_json()["created_by"] == "local"


def test_other_address_without_identities_refuses_runs_and_says_how(app_factory, runbooks_dir, pg):
    app = app_factory(runbooks_dir=str(runbooks_dir), host="0.0.0.0", targets={"t": {"dsn": pg.dsn("monitor")}})
    r = app.test_client().post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"})
    assert r.status_code == 401
    assert "kb token create" in r.get_json()["error"]


def test_trusted_proxy_header(app_factory, runbooks_dir, pg):
    app = app_factory(runbooks_dir=str(runbooks_dir), trusted_proxies=["127.0.0.1"], users={"alice": "admin"},
                      targets={"t": {"dsn": pg.dsn("monitor")}})
    c = app.test_client()
    ok = c.post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"}, headers={"X-Forwarded-User": "alice"})
    assert ok.status_code == 201 and ok.get_json()["created_by"] == "alice"
    spoofed = c.post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"}, headers={"X-Forwarded-User": "alice"},
                     environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert spoofed.status_code == 401


def test_rate_limits_answer_429_with_retry_after(app_factory, runbooks_dir):
    app = app_factory(runbooks_dir=str(runbooks_dir), rate_search="3/60")
    c = app.test_client()
    codes = [c.get("/api/v1/search?q=deadlock").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = c.get("/api/v1/search?q=deadlock")
    assert int(r.headers["Retry-After"]) >= 1 and r.get_json()["status"] == 429


def slack_post(c, secret, text, ts=None, user="U1", sig=None):
    body = urllib.parse.urlencode({"text": text, "user_id": user, "user_name": "bob", "command": "/kb"})
    ts = str(int(time.time())) if ts is None else str(ts)
    if sig is None:
        sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return c.post("/chat/slack", data=body, content_type="application/x-www-form-urlencoded",
                  headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})


def test_slack_signature_valid_invalid_stale(secured):
    app, _ = secured
    c = app.test_client()
    ok = slack_post(c, "s3cret", "FATAL: sorry, too many clients already")
    assert ok.status_code == 200
    assert "too-many-clients" in ok.get_json()["text"]
    assert slack_post(c, "wrong", "x").status_code == 401
    assert slack_post(c, "s3cret", "x", ts=int(time.time()) - 301).status_code == 401
    assert slack_post(c, "s3cret", "x", sig="").status_code == 401


@pytest.mark.parametrize("paste", ["ERROR 1040 (HY000): Too many connections",
                                   "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"])
def test_slack_never_posts_suggestions_to_the_channel(secured, paste):
    app, _ = secured
    body = slack_post(app.test_client(), "s3cret", paste).get_json()
    assert body["response_type"] == "ephemeral"
    assert body["text"].startswith("No known PostgreSQL message in this text.")
    assert "not a match" in body["text"] or "\n" not in body["text"]


def test_slack_posts_a_found_message_with_its_language(secured):
    app, _ = secured
    body = slack_post(app.test_client(), "s3cret", "FATAL:  tut mir leid, schon zu viele Verbindungen").get_json()
    assert body["response_type"] == "in_channel"
    assert body["text"].startswith("Found:") and "too-many-clients" in body["text"]
    assert "translated from German" in body["text"]


def mattermost_post(c, token, text):
    body = urllib.parse.urlencode({"text": text, "user_id": "mm-user-1", "user_name": "bob", "command": "/kb",
                                   "channel_id": "c1", "team_id": "t1", "token": token, "trigger_id": f"trg-{text}"})
    return c.post("/chat/slack", data=body, content_type="application/x-www-form-urlencoded",
                  headers={"Authorization": f"Token {token}"})


def test_mattermost_slash_command_is_accepted_with_its_token_only(app_factory):
    app = app_factory(mattermost_token="mm-tok-1, mm-tok-2")
    c = app.test_client()
    ok = mattermost_post(c, "mm-tok-2", "FATAL:  sorry, too many clients already")
    assert ok.status_code == 200 and "too-many-clients" in ok.get_json()["text"]
    bad = mattermost_post(c, "guess", "FATAL:  sorry, too many clients already")
    assert bad.status_code == 401 and bad.get_json()["error"] == "unknown Mattermost command token"
    # an unsigned request without the token is refused as before; no API token is involved
    assert c.post("/chat/slack", data={"text": "x"}).status_code == 404
    assert mattermost_post(app_factory().test_client(), "mm-tok-1", "x").status_code == 404


def test_slack_run_starts_and_advances_to_a_decision(secured):
    """The command is answered at once; the chat worker runs the diagnostics up to the action."""
    app, tokens = secured
    r = slack_post(app.test_client(), "s3cret", "run probe-action t")
    reply = r.get_json()
    assert r.status_code == 200 and reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("Started <http://localhost/runs/") and "of *Probe: an action* on `t`" in reply["text"]
    app.extensions["kb_chat_worker"].close()  # waits for the work in hand
    run_id = re.search(r"/runs/([0-9a-f]+)\|", reply["text"]).group(1)
    run = app.test_client().get(f"/api/v1/runs/{run_id}", headers=headers(tokens, "admin")).get_json()
    assert (run["summary"], run["created_by"]) == ("Waiting for confirmation: Touch item 2", "chat:U1")


def test_slack_run_needs_operator(secured):
    app, _ = secured
    r = slack_post(app.test_client(), "s3cret", "run probe-action t", user="U-unknown")
    assert "needs operator" in r.get_json()["text"]


def test_slack_disabled_without_secret(client):
    assert client.post("/chat/slack", data={"text": "x"}).status_code == 404
