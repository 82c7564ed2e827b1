"""Attacks on the Slack endpoint, over real HTTP to `kb serve` (two hosts, one with two workers,
sharing one PostgreSQL run store) and against a real target: replayed signed requests, the run rate
limit, roles by user name, and target values that try to become Slack mentions, links or HTML."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg
import pytest
from markdown_it import MarkdownIt

from kb.runbooks.store import RunStore
from kb.runbooks.transcript import transcript
from tests.server import Server

SECRET = "chat-s3cret"
# what a hostile session shows in pg_stat_activity (application_name is cut at 63 bytes)
APP_PAYLOAD = "<!channel> <script>alert(1)</script> `x`"
QUERY_PAYLOAD = "<!here> <img src=x onerror=alert(2)> <https://evil.example|click> ``` ![i](http://evil.example/t.png)"
RAW = ["<!channel>", "<!here>", "<script", "<img", "<https://evil"]


def slack_body(text: str, user_id: str, user_name: str = "bob", team_id: str = "T1",
               response_url: str = "http://127.0.0.1:9/unused") -> bytes:
    return urllib.parse.urlencode({"command": "/kb", "text": text, "user_id": user_id, "user_name": user_name,
                                   "team_id": team_id, "channel_id": "C1", "response_url": response_url,
                                   "trigger_id": f"1.{time.time_ns()}"}).encode()


def sign(body: bytes, ts: int | None = None, secret: str = SECRET) -> dict:
    ts = int(time.time()) if ts is None else ts
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig}


def post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/chat/slack", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, path: str) -> str:
    with urllib.request.urlopen(url + path, timeout=60) as r:
        return r.read().decode()


def chat(url: str, text: str, user_id: str, **kw) -> tuple[int, dict]:
    body = slack_body(text, user_id, **kw)
    return post(url, body, sign(body))


def runs_by(url: str, who: str) -> list[dict]:
    return [r for r in json.loads(get(url, "/api/v1/runs?limit=200"))["runs"] if r["created_by"] == who]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, pg, store_cluster):
    """Host A (two gunicorn workers) and host B (one), one PostgreSQL run store, target `t`."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    rb = tmp_path_factory.mktemp("chat-runbooks")
    shutil.copytree(root / "runbooks", rb, dirs_exist_ok=True)
    for f in (root / "tests" / "fixtures" / "runbooks").glob("*.yaml"):
        shutil.copy(f, rb)
    store_cluster.sql("CREATE DATABASE chat_security")
    toml = (f'slack_signing_secret = "{SECRET}"\nrate_runs = "2/60"\n\n'
            f'[targets.t]\ndsn = "{pg.dsn("monitor")}"\ncap = 2\n\n'
            '[chat_users]\nU1 = "operator"\nU2 = "operator"\nU3 = "operator"\n'
            'alice = "admin"\n'  # keyed by a user name, as the README once allowed: must grant nothing
            '"T9:U9" = "operator"\n')
    env = {"KB_STORE_URL": store_cluster.url("postgres", "chat_security"), "KB_RUNBOOKS_DIR": str(rb)}
    a = Server(tmp_path_factory.mktemp("chat-host-a"), toml, env=env, workers=2)
    b = Server(tmp_path_factory.mktemp("chat-host-b"), toml, env=env, workers=1)
    try:
        a.start()
        b.start()
        yield a.url, b.url
    finally:
        a.stop()
        b.stop()


def test_replayed_slack_request_is_refused_by_every_worker_and_host(hosts):
    """One signed `/kb run`, sent 40 times at once to three workers on two hosts (as an attacker who
    captured it would, within its 5 minutes): one run starts, 39 copies get 401 in the error shape."""
    a, b = hosts
    body = slack_body("run probe-action t", "U1")
    headers = sign(body)
    results: list = [None] * 40
    gate = threading.Barrier(len(results))

    def one(i):
        gate.wait()
        results[i] = post([a, b][i % 2], body, headers)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r for code, r in results if code == 200]
    assert len(accepted) == 1 and accepted[0]["text"].startswith("Started <http://127.0.0.1:")
    refused = [r for code, r in results if code != 200]
    assert refused == [{"ok": False, "status": 401, "errors": [],
                        "error": "replayed request: this signed request was already received"}] * 39
    assert len(runs_by(a, "chat:T1:U1")) == 1
    # later, the same replay is still refused on either host; a newly signed request is not
    assert post(b, body, headers)[0] == 401
    assert post(a, body, headers)[0] == 401
    fresh = slack_body("help", "U1")
    assert post(a, fresh, sign(fresh))[1]["text"].startswith("Usage:")


def test_record_once_is_atomic_and_forgets_expired_keys(store_url, tmp_path):
    """The replay record in the store (SQLite and PostgreSQL): of 16 concurrent first sightings of
    one key exactly one wins; an expired record is dropped."""
    store = RunStore(store_url, tmp_path)
    try:
        wins: list = []
        gate = threading.Barrier(16)

        def one():
            gate.wait()
            wins.append(store.record_once("slack:1:v0=abc", time.time() + 300))

        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False] * 15 + [True]
        assert store.record_once("slack:1:v0=abc", time.time() + 300) is False
        assert store.record_once("slack:0:v0=old", time.time() - 1) is True
        assert store.record_once("slack:0:v0=old", time.time() + 300) is True
    finally:
        store.close()


def test_chat_runs_count_against_the_api_run_rate_limit(hosts):
    """rate_runs = 2/60: the third run a chat user starts within a minute is refused, renamed or not."""
    _, b = hosts  # one worker: the limit is counted in one place whatever the store does with it
    assert chat(b, "run probe-action t", "U2", user_name="bob")[0] == 200
    assert chat(b, "run probe-action t", "U2", user_name="bobby")[0] == 200
    code, third = chat(b, "run probe-action t", "U2", user_name="not-bob-anymore")
    assert code == 200 and third["response_type"] == "ephemeral"
    assert third["text"].startswith("too many runs requests; retry in ")
    assert len(runs_by(b, "chat:T1:U2")) == 2


@pytest.mark.parametrize("user_id,user_name,team_id,started", [
    ("U-evil", "alice", "T1", False),   # renamed to the user name [chat_users] once listed: no role
    ("U9", "carol", "T9", True),        # "T9:U9" = operator
    ("U9", "carol", "T8", False),       # the same user id in another team
    ("", "alice", "T1", False),         # no user id at all
])
def test_chat_role_comes_from_user_id_never_user_name(hosts, user_id, user_name, team_id, started):
    a, _ = hosts
    code, reply = chat(a, "run probe-action t", user_id, user_name=user_name, team_id=team_id)
    assert code == 200
    if started:
        assert reply["text"].startswith("Started <") and "of *Probe: an action* on `t`" in reply["text"]
    else:
        assert (reply["response_type"], reply["text"]) == (
            "ephemeral", f"{user_name} has the reader role; starting a run needs operator.")
        assert runs_by(a, f"chat:{team_id}:{user_id}" if user_id else "chat:unknown") == []


def test_user_text_is_escaped_in_slack_replies(hosts):
    a, _ = hosts
    code, reply = chat(a, "run <!channel> t", "U1", user_name="<!here>")
    assert (code, reply["response_type"], reply["text"]) == (
        200, "ephemeral", "Could not start: runbook '&lt;!channel&gt;' not found")


@pytest.fixture
def hostile_session(pg):
    """A session whose application_name and last statement are payloads, idle in a transaction that
    holds a row lock another session has waited on for more than lock-waits' 5 seconds."""
    pg.sql("CREATE TABLE IF NOT EXISTS public.chat_sec (id int PRIMARY KEY)")
    pg.sql("INSERT INTO public.chat_sec VALUES (1) ON CONFLICT DO NOTHING")
    blocker = psycopg.connect(pg.dsn("postgres"), application_name=APP_PAYLOAD)
    blocker.execute(f"UPDATE public.chat_sec SET id = id WHERE id = 1 /* {QUERY_PAYLOAD} */")
    waiter = psycopg.connect(pg.dsn("postgres"), autocommit=True)

    def wait():
        try:
            waiter.execute("SET lock_timeout = '60s'; UPDATE public.chat_sec SET id = id WHERE id = 1")
        except psycopg.Error:
            pass  # the test ended the blocker some other way; nothing to wait for

    waiting = threading.Thread(target=wait)
    waiting.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = pg.sql("SELECT extract(epoch FROM now() - min(coalesce(waitstart, now())))::float FROM pg_locks"
                          " WHERE NOT granted AND pid = %s", (waiter.info.backend_pid,))
            if rows and rows[0][0] and rows[0][0] > 5.5:
                break
            time.sleep(0.5)
        yield blocker
    finally:
        blocker.rollback()
        blocker.close()
        waiting.join(timeout=60)
        waiter.close()


def test_target_values_are_escaped_in_slack_and_the_transcript(hosts, hostile_session):
    """`/kb run lock-waits t` lists the blocking session: its application_name and query text reach
    Slack as text in the run's message, posted later by the worker of whichever gunicorn process took
    the command (no mention, link or HTML), and the transcript as text (no raw HTML)."""
    from tests.test_chat_flow import Hook, check_block_kit, mrkdwn

    a, _ = hosts
    hook = Hook()
    try:
        body = slack_body("run lock-waits t", "U3", response_url=hook.url + "/hostile")
        code, reply = post(a, body, sign(body))
        assert code == 200 and reply["text"].startswith(f"Started <{a}/runs/"), reply
        message = hook.wait("/hostile")[0]
    finally:
        hook.close()
    check_block_kit(message, base=a)  # the only markup: kb's own links
    text = mrkdwn(message)
    assert message["response_type"] == "in_channel"
    assert message["text"].startswith("*Lock waits and blocking chains* on `t`: action Terminate the idle transaction "
                                      "at the root\n")
    assert "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt;" in text  # the value arrived, as text
    assert "&lt;!here&gt; &lt;img src=x onerror=alert(2)&gt; &lt;https://evil.example|click&gt;" in text
    for raw in RAW:
        assert raw not in text
    # Slack cannot escape a backtick: the value's are shown as ˋ, and the only ``` fence the preview's own
    assert "ˋxˋ" in text and "ˋˋˋ" in text and all(t.count("```") in (0, 2) for t in text.split("\n\n"))

    run_id = runs_by(a, "chat:T1:U3")[-1]["id"]
    md = get(a, f"/api/v1/runs/{run_id}/transcript")
    for raw in RAW:
        assert raw not in md
    assert "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; \\`x\\`" in md
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in html and "<img" not in html
    assert html.count("<a ") == html.count(f'<a href="{a}/')  # only kb's own links
    assert "<td>&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; `x`</td>" in html


@pytest.mark.parametrize("name", ["a`b``c <script>x</script>", "`", "```\n# owned\n```", "x|y <!channel>"])
def test_parameters_stay_inside_their_code_span(app_factory, runbooks_dir, pg, name):
    """A run parameter is shown as a code span with a longer delimiter than any backtick run in it
    (CommonMark), and in Slack text as code that a backtick cannot end."""
    from html import escape

    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    c = app.test_client()
    r = c.post("/api/v1/runs", json={"runbook": "probe-param", "target": "t", "params": {"name": name}, "auto": True})
    assert r.status_code == 201, r.get_json()
    run = r.get_json()
    md = c.get(f"/api/v1/runs/{run['id']}/transcript").get_data(as_text=True)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    shown = escape(" ".join(name.split()), quote=False)
    assert f"<code>name={shown}</code>" in html and "<code>limit_n=3</code>" in html
    assert "<script" not in html and "owned</h1>" not in html
    assert f"<td>{shown}</td>" in html  # the echoed value, a table cell of its own
    line = next(x for x in transcript(run, flavor="slack").splitlines() if x.startswith("- Parameters: "))
    assert line.count("`") == 4 and "<" not in line
