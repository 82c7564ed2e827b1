"""The whole guided fix from a chat channel, as Slack drives it.

Signed slash commands and `block_actions` payloads shaped like Slack's documented ones are posted to
the app; a real HTTP server on 127.0.0.1 stands in for `response_url` and receives the messages the
worker posts later. A run goes from `/kb run` to its verdict on a reproduced failure (a 30 s statement
holding a row lock, PostgreSQL cancels it when the admin confirms), every message is held to Block
Kit's documented limits, and hostile values from the database and the user arrive as text.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from kb import scenarios

SECRET = "flow-s3cret"
HOSTILE = "<!here> <http://x|y> & <!channel>"
USERS = {"UOP": "operator", "UADM": "admin", "UADM2": "admin"}


# --- a stand-in for Slack ------------------------------------------------------------------------

class Hook:
    """An HTTP server on loopback that records every message posted to it, by path."""

    def __init__(self):
        self.messages: list[tuple[str, dict]] = []
        self.cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.cond:
                    hook.messages.append((self.path, json.loads(body)))
                    hook.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, path: str) -> list[dict]:
        with self.cond:
            return [m for p, m in self.messages if p == path]

    def wait(self, path: str, count: int = 1, timeout: float = 30.0, until=None) -> list[dict]:
        """The messages posted to `path` once there are `count` (or one satisfies `until`)."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [m for p, m in self.messages if p == path]
                if (until(got[-1]) if until and got else len(got) >= count):
                    return got
                left = end - time.monotonic()
                assert left > 0, f"{path}: {len(got)} message(s) after {timeout} s: {json.dumps(got)[:2000]}"
                self.cond.wait(left)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hook():
    h = Hook()
    yield h
    h.close()


def signed(body: bytes, ts: int | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig}


SEQ = itertools.count(1)  # each command and press gets a response_url of its own, whichever app it went to


class Slack:
    """Sends what Slack sends: slash commands and button presses, each signed, to one app."""

    def __init__(self, app, hook: Hook):
        self.app, self.hook, self.client = app, hook, app.test_client()

    def command(self, text: str, user: str = "UOP", user_name: str = "olga") -> tuple[dict, str]:
        """`/kb text` as `user`; the reply and the path its response_url points at."""
        n = next(SEQ)
        path = f"/commands/{n}"
        body = urllib.parse.urlencode({
            "token": "unused", "team_id": "T1", "team_domain": "acme", "channel_id": "C1", "channel_name": "incidents",
            "user_id": user, "user_name": user_name, "command": "/kb", "text": text, "api_app_id": "A1",
            "response_url": self.hook.url + path, "trigger_id": f"{n}.{time.time_ns()}.abc"}).encode()
        started = time.monotonic()
        r = self.post("/chat/slack", body)
        assert time.monotonic() - started < 3, "Slack gives a slash command 3 seconds"
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json(), path

    def press(self, message: dict, action: str, user: str = "UADM", user_name: str = "ada",
              headers: dict | None = None) -> tuple[int, str, bytes, dict]:
        """Press the button whose action_id starts with `action` in `message`, as Slack reports it."""
        button = find_button(message, action)
        n = next(SEQ)
        path = f"/presses/{n}"
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": "T1"},
            "api_app_id": "A1", "token": "unused",
            "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C1",
                          "is_ephemeral": False},
            "trigger_id": f"{n}.{time.time_ns()}.def",
            "team": {"id": "T1", "domain": "acme"},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": "C1", "name": "incidents"},
            "message": {"type": "message", "ts": "1700000000.000100", "text": message["text"],
                        "blocks": message["blocks"]},
            "state": {"values": {}},
            "response_url": self.hook.url + path,
            "actions": [{"action_id": button["action_id"], "block_id": "b1", "text": button["text"],
                         "value": button.get("value"), "type": "button", "style": button.get("style"),
                         "action_ts": f"{time.time():.6f}"}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        headers = headers or signed(body)
        started = time.monotonic()
        r = self.post("/chat/slack/interactions", body, headers)
        assert time.monotonic() - started < 3, "Slack gives an interaction 3 seconds"
        return r.status_code, path, body, headers

    def post(self, url: str, body: bytes, headers: dict | None = None):
        return self.client.post(url, data=body, content_type="application/x-www-form-urlencoded",
                                headers=headers or signed(body))

    def drain(self):
        """Wait until the worker has posted everything it was handed."""
        worker = self.app.extensions.get("kb_chat_worker")
        if worker is not None:
            worker.close()


def buttons(message: dict) -> list[dict]:
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def find_button(message: dict, action: str) -> dict:
    """`kb_confirm` (an action id or its prefix before `:`), or `kb_answer=cancel` (the answer's value)."""
    name, _, answer = action.partition("=")
    found = [b for b in buttons(message) if name in (b["action_id"], b["action_id"].split(":")[0])
             and (not answer or json.loads(b["value"]).get("a") == answer)]
    assert found, f"no {action} button in {json.dumps(message)[:1500]}"
    return found[0]


def mrkdwn(message: dict) -> str:
    """Every mrkdwn and plain text of a message, with its fallback text."""
    out = [message.get("text", "")]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text"):
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(message.get("blocks", []))
    return "\n".join(out)


# --- Block Kit's documented limits -----------------------------------------------------------------

def check_block_kit(message: dict, base: str = "http://localhost") -> None:
    """A message as Slack accepts it: at most 50 blocks; section text 3,000 characters and at most 10
    fields; context at most 10 elements; actions at most 25 elements with unique action ids; button
    text 75, value 2,000, url 3,000, action_id 255; confirmation dialog title 100, text 300, buttons 30;
    the fallback text within 3,000 here (Slack cuts at 40,000). Values are escaped: the only `<` opens
    one of kb's own links."""
    blocks = message.get("blocks", [])
    assert 1 <= len(blocks) <= 50
    assert isinstance(message["text"], str) and 0 < len(message["text"]) <= 3000
    for b in blocks:
        assert b["type"] in ("section", "context", "actions", "divider"), b
        if b["type"] == "section":
            assert b["text"]["type"] == "mrkdwn" and b["text"].get("verbatim") is True
            assert 1 <= len(b["text"]["text"]) <= 3000
            assert len(b.get("fields", [])) <= 10
        elif b["type"] == "context":
            assert 1 <= len(b["elements"]) <= 10
            assert all(len(e["text"]) <= 3000 for e in b["elements"])
        elif b["type"] == "actions":
            assert 1 <= len(b["elements"]) <= 25
            ids = [e["action_id"] for e in b["elements"]]
            assert len(set(ids)) == len(ids), ids
            for e in b["elements"]:
                assert e["type"] == "button" and e["text"]["type"] == "plain_text"
                assert 1 <= len(e["text"]["text"]) <= 75 and len(e["action_id"]) <= 255
                assert len(e.get("value") or "") <= 2000 and len(e.get("url") or "") <= 3000
                assert ("url" in e) != ("value" in e), e  # a link or a press, never both
                if "confirm" in e:
                    c = e["confirm"]
                    assert len(c["title"]["text"]) <= 100 and len(c["text"]["text"]) <= 300
                    assert len(c["confirm"]["text"]) <= 30 and len(c["deny"]["text"]) <= 30
    text = mrkdwn(message)
    for m in re.finditer(r"<", text):
        assert text.startswith(base, m.end()), f"markup that is not kb's own link: {text[m.start():m.start() + 80]!r}"
    for raw in ("<!here>", "<!channel>", "<http://x|y>"):
        assert raw not in text


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def blocked():
    """The reproduced failure: `nightly-batch` holds row 1 in a 30 s statement, `worker` waits for it."""
    sc = scenarios.SCENARIOS["locks-long-query-cancel"]
    cluster, holder = scenarios.start(sc.name)
    try:
        yield sc, cluster, holder
    finally:
        holder.close()
        cluster.destroy()


def make_app(tmp, targets: dict, **kw):
    """An app over the shipped runbooks and the probe runbooks, with Slack enabled and USERS mapped."""
    import shutil

    from kb.web.app import create_app
    from tests.conftest import ROOT, make_config

    rb = tmp / "runbooks"
    if not rb.exists():
        shutil.copytree(ROOT / "runbooks", rb)
        for f in (ROOT / "tests" / "fixtures" / "runbooks").glob("*.yaml"):
            shutil.copy(f, rb)
    return create_app(make_config(tmp, kw.pop("index_dir"), runbooks_dir=str(rb), targets=targets,
                                  slack_signing_secret=SECRET, chat_users=USERS, **kw))


@pytest.fixture(scope="module")
def app(tmp_path_factory, index_dir, blocked, pg):
    """One app for the module: target `t` is the reproduced failure, `p` and `q` the session cluster (`q`
    for admins only, so an operator may use `t` and `p`)."""
    sc, cluster, holder = blocked
    a = make_app(tmp_path_factory.mktemp("chat-flow"), {"t": sc.target(cluster, holder), "p": {"dsn": pg.dsn("monitor")},
                                                       "q": {"dsn": pg.dsn("monitor"), "roles": ["admin"]}},
                 index_dir=index_dir)
    yield a
    a.extensions["kb"].runs.close()


@pytest.fixture(scope="module")
def slack(app, hook):
    s = Slack(app, hook)
    yield s
    s.drain()


# --- the guided fix, from the channel --------------------------------------------------------------

def test_a_run_from_the_channel_to_its_verdict(app, slack, hook, blocked, artifacts):
    """`/kb run lock-waits t wait_seconds=1`, answer the question, an operator's Confirm refused, the
    admin's accepted: the statement is cancelled in PostgreSQL and the message ends on the verdict."""
    sc, cluster, holder = blocked

    ack, cmd = slack.command("run lock-waits t wait_seconds=1")
    assert ack["response_type"] == "ephemeral" and ack["text"].startswith("Started <http://localhost/runs/")
    check_block_kit(ack)
    first = hook.wait(cmd)[0]
    check_block_kit(first)
    assert (first["response_type"], first["replace_original"]) == ("in_channel", False)
    text = mrkdwn(first)
    assert "*Question: Cancel the query or end the session?*" in text
    assert "nightly-batch" in text and "has been running for" in text  # the one line the root step found
    assert [b["text"]["text"] for b in buttons(first) if "value" in b] == [
        "Cancel the statement (pg_cancel_backend)",
        "End the session (pg_terminate_backend), it ignores cancels or its client is gone"[:74] + "…",
        "Let it finish (an important job, a backup, a migration about to end)"]
    assert "• End the session (pg_terminate_backend), it ignores cancels or its client is gone" in text
    run_id = re.search(r"/runs/([0-9a-f]+)\|", text).group(1)

    # the operator answers: the message is replaced, first with who did what, then with the action
    code, press1, *_ = slack.press(first, "kb_answer=cancel", user="UOP", user_name="olga")
    assert code == 200
    working, action = hook.wait(press1, 2)
    assert working["replace_original"] is True and "olga answered “Cancel the statement (pg_cancel_backend)”" in working["text"]
    assert not [b for b in buttons(working) if "value" in b]  # nothing to press twice while it runs
    check_block_kit(action)
    text = mrkdwn(action)
    assert "*Action: Cancel the blocking statement*" in text and "Would affect *1* row:" in text
    assert "nightly-batch" in text.split("```")[1]  # the preview's top rows
    confirm = find_button(action, "kb_confirm")
    assert confirm["style"] == "danger" and confirm["confirm"]["title"]["text"] == "Run this action?"

    # an operator's Confirm is refused, said privately, recorded; nothing runs
    code, press2, *_ = slack.press(action, "kb_confirm", user="UOP", user_name="olga")
    refused = hook.wait(press2)[0]
    assert (refused["response_type"], refused["replace_original"]) == ("ephemeral", False)
    assert refused["text"].startswith("olga may not confirm this: chat:T1:UOP has the operator role; confirming an "
                                      "action needs admin")
    check_block_kit(refused)

    # the admin confirms: once, then kb looks again and concludes
    code, press3, body, sent = slack.press(action, "kb_confirm", user="UADM", user_name="ada")
    messages = hook.wait(press3, until=lambda m: "Problem found" in m["text"])
    assert "ada confirmed *Cancel the blocking statement*" in messages[0]["text"]
    done = messages[-1]
    check_block_kit(done)
    text = mrkdwn(done)
    assert "*Problem found*: *Blocking statement cancelled*" in text
    assert "<http://localhost/errors/canceling-statement-user-request#fix-prefer-a-server-side-statement-timeout" in text
    assert find_button(done, "kb_open")["url"] == f"http://localhost/runs/{run_id}"
    sc.verify(cluster, holder)  # PostgreSQL cancelled the 30 s statement and the waiter got its row

    # Slack's retry of the same press (signed anew) and a replay of the original are not acted on
    slack.drain()
    before = len(hook.messages)
    retry = slack.post("/chat/slack/interactions", body, {**signed(body, int(time.time()) + 1), "X-Slack-Retry-Num": "1",
                                                          "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status_code == 200
    replay = slack.post("/chat/slack/interactions", body, sent)
    assert (replay.status_code, replay.get_json()) == (401, {
        "ok": False, "status": 401, "errors": [], "error": "replayed request: this signed request was already received"})
    slack.drain()
    assert len(hook.messages) == before

    # a button of an earlier state is refused privately
    code, press4, *_ = slack.press(first, "kb_answer=cancel", user="UOP")
    assert hook.wait(press4)[0]["text"].startswith(f"That button belongs to an earlier state of run {run_id}")

    ours = (cmd, press1, press2, press3, press4)
    (artifacts / "chat-run.json").write_text(json.dumps([{"response_url": hook.url + p, **m} for p, m in hook.messages
                                                         if p in ours], indent=1, ensure_ascii=False))
    store = app.extensions["kb"].runs.store
    trail = [(a["actor"], a["event"]) for a in store.audit_trail(run_id)]
    assert ("chat:T1:UOP", "answer") in trail and ("chat:T1:UOP", "confirm-refused") in trail
    assert ("chat:T1:UADM", "claim") in trail and ("chat:T1:UADM", "confirm") in trail
    assert [e for _, e in trail].count("confirm") == 1


# --- finding the entry, and its Run button ------------------------------------------------------------

def test_search_reply_has_the_quick_fix_and_buttons_to_open_and_run(slack, hook):
    """`/kb <paste>`: the matched message and entry, its quick fix in at most three lines, Open and Run
    buttons; Run asks the operator which of the two targets it may use, and the run's message follows."""
    reply, _ = slack.command("2024-05-01 10:00:00 UTC [123] app@shop FATAL:  sorry, too many clients already")
    check_block_kit(reply)
    assert reply["response_type"] == "in_channel" and reply["text"].startswith("Found:\n• <http://localhost/errors/too-many-clients|")
    first = reply["blocks"][0]["text"]["text"]
    assert first.startswith("*<http://localhost/errors/too-many-clients|FATAL: sorry, too many clients already>* · SQLSTATE 53300")
    assert "_found in the text_: `sorry, too many clients already`" in first
    quick = first.split("*Quick fix*\n")[1].splitlines()
    assert len(quick) == 3 and quick[0].startswith("• *Get a session.* Connect as a superuser")
    run_button = find_button(reply, "kb_start")
    assert run_button["text"]["text"] == "Run: Connection exhaustion" and json.loads(run_button["value"]) == {
        "rb": "connection-exhaustion"}
    assert find_button(reply, "kb_open")["url"] == "http://localhost/errors/too-many-clients"

    code, path, *_ = slack.press(reply, "kb_start", user="UOP")
    chooser = hook.wait(path)[0]
    check_block_kit(chooser)
    assert chooser["response_type"] == "ephemeral"
    assert chooser["text"] == "Run *Connection exhaustion* on which target?"
    assert [b["text"]["text"] for b in buttons(chooser)] == ["t", "p"]  # not q: it is for admins only
    code, path, *_ = slack.press(chooser, "kb_start_on:1", user="UOP")
    message = hook.wait(path, until=lambda m: m.get("response_type") == "in_channel")[-1]
    check_block_kit(message)
    assert message["replace_original"] is False
    text = mrkdwn(message)
    assert "*<http://localhost/runs/" in text and "|Connection exhaustion>* on `p`" in text
    assert re.search(r"\*How full are the connection slots\?\*: \d+% of usable slots in use", text), text


def test_no_known_message_is_answered_privately(slack):
    reply, _ = slack.command("ERROR 1040 (HY000): Too many connections")
    check_block_kit(reply)
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("No known PostgreSQL message in this text.")


def test_a_message_without_an_entry_links_to_its_catalog_page(slack):
    reply, _ = slack.command("ERROR:  cannot use subquery in check constraint")
    check_block_kit(reply)
    assert reply["response_type"] == "in_channel"
    text = reply["blocks"][0]["text"]["text"]
    assert text.startswith("*<http://localhost/messages/") and text.endswith(
        "_found in the text_: `cannot use subquery in check constraint`\nNo entry is written for this message yet.")
    assert find_button(reply, "kb_open")["url"].startswith("http://localhost/messages/")
    assert not [b for b in buttons(reply) if b["action_id"].startswith("kb_start")]


def test_interactions_need_the_secret_and_a_payload(client, slack):
    assert client.post("/chat/slack/interactions", data={"payload": "{}"}).status_code == 404
    body = b"payload=%7Bnot+json"
    r = slack.post("/chat/slack/interactions", body)
    assert (r.status_code, r.get_json()["error"]) == (400, "the form field payload must hold the interaction's JSON")
    body = urllib.parse.urlencode({"payload": json.dumps({"type": "view_submission"})}).encode()
    assert slack.post("/chat/slack/interactions", body).status_code == 200  # acknowledged, nothing to do
    unsigned = slack.client.post("/chat/slack/interactions", data=body, content_type="application/x-www-form-urlencoded")
    assert (unsigned.status_code, unsigned.get_json()["error"]) == (401, "missing or malformed X-Slack-Request-Timestamp")


# --- hostile values from the database and from the user ------------------------------------------------

@pytest.fixture
def hostile_blocker(pg):
    """A session named HOSTILE, its last statement carrying HOSTILE, idle in a transaction that holds a row
    another session waits for."""
    pg.sql("CREATE TABLE IF NOT EXISTS public.chat_flow (id int PRIMARY KEY)")
    pg.sql("INSERT INTO public.chat_flow VALUES (1) ON CONFLICT DO NOTHING")
    blocker = psycopg.connect(pg.dsn("postgres"), application_name=HOSTILE)
    blocker.execute(f"UPDATE public.chat_flow SET id = id WHERE id = 1 /* {HOSTILE} `x` */")
    waiter = psycopg.connect(pg.dsn("postgres"), autocommit=True)
    waiting = threading.Thread(target=lambda: _quietly(waiter.execute, "SET lock_timeout = '60s'; "
                                                       "UPDATE public.chat_flow SET id = id WHERE id = 1"))
    waiting.start()
    deadline = time.monotonic() + 10
    while not pg.sql("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = %s", (waiter.info.backend_pid,))[0][0]:
        assert time.monotonic() < deadline, "the waiter never waited"
        time.sleep(0.05)
    try:
        yield blocker
    finally:
        blocker.rollback()
        blocker.close()
        waiting.join(timeout=30)
        waiter.close()


def _quietly(fn, *args):
    try:
        fn(*args)
    except psycopg.Error:
        pass


def test_hostile_values_arrive_as_text(slack, hook, hostile_blocker):
    """An application_name and a statement of `<!here> <http://x|y> & <!channel>` in the root step's
    finding and the action's preview, a user named `<!here>` who skips the action, and a paste whose
    values are hostile: every one is shown as text, nothing becomes a mention or a link."""
    ack, path = slack.command("run lock-waits p wait_seconds=0", user_name="<!here>")
    check_block_kit(ack)
    action = hook.wait(path)[0]
    check_block_kit(action)
    text = mrkdwn(action)
    escaped = "&lt;!here&gt; &lt;http://x|y&gt; &amp; &lt;!channel&gt;"
    assert f"has been idle in transaction for" in text and escaped in text
    assert text.count(escaped) >= 3  # the root's finding, and its application and last statement in the preview
    assert "ˋxˋ" in text  # a value's backtick cannot end kb's code span

    code, press, *_ = slack.press(action, "kb_decline", user="UADM", user_name="<!here> & co")
    working, done = hook.wait(press, 2)
    for m in (working, done):
        check_block_kit(m)
    assert working["text"].startswith("*Lock waits and blocking chains* on `p`: &lt;!here&gt; &amp; co skipped *Terminate the idle transaction at the root*; "
                                      "nothing is changed…\n")
    assert "*Problem found*: *The blocker is idle in transaction*" in mrkdwn(done)
    assert hostile_blocker.execute("SELECT 1").fetchone() == (1,)  # skipped: the session is still there

    reply, _ = slack.command(f'ERROR:  relation "{HOSTILE}" does not exist', user_name="<!channel>")
    check_block_kit(reply)
    assert f"with `{escaped}`" in mrkdwn(reply)


def test_long_values_are_cut_with_a_note(slack, hook):
    """A 200-character parameter shown in a run's message is cut, and the message says so."""
    _, path = slack.command("run probe-param p name=" + "<!here>&" * 25 + " limit_n=3")
    done = hook.wait(path)[0]
    check_block_kit(done)
    text = mrkdwn(done)
    assert "`name=" + "&lt;!here&gt;&amp;" * 9 + "&lt;!here&gt;…`" in text  # 80 characters of the value
    assert done["blocks"][-1]["elements"][0]["text"] == "Long values are cut here; the run page shows them in full."


def test_parameters_are_validated_as_in_the_api(slack, hook):
    reply, _ = slack.command("run probe-sleep p seconds=99 colour=red")
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == ("Could not start: invalid runbook parameters (params.colour: unknown parameter; "
                             "params.seconds: must be at most 30)")
    reply, _ = slack.command("run probe-sleep p seconds")
    assert reply["text"] == "Parameters are written name=value; seconds is not."


# --- slow steps, retries, several hosts ------------------------------------------------------------

def test_a_slow_step_is_answered_at_once_and_posted_when_done(slack, hook):
    """A 3.5 s diagnostic: the command is answered within Slack's 3 seconds, the run's message follows."""
    started = time.monotonic()
    ack, path = slack.command("run probe-sleep p seconds=3.5")
    assert time.monotonic() - started < 1.5 and hook.at(path) == []
    done = hook.wait(path)[0]
    assert time.monotonic() - started >= 3.5
    check_block_kit(done)
    assert "*Healthy*: *Done*\nSlept." in mrkdwn(done)


@pytest.fixture
def two_hosts(tmp_path, index_dir, pg, store_cluster):
    """Two apps (as two hosts) sharing one PostgreSQL run store."""
    import secrets

    name = "chat_flow_" + secrets.token_hex(4)
    store_cluster.sql(f"CREATE DATABASE {name}")
    url = store_cluster.url("postgres", name)
    apps = [make_app(tmp_path / host, {"p": {"dsn": pg.dsn("monitor")}}, store_url=url, index_dir=index_dir)
            for host in ("a", "b")]
    yield apps
    for a in apps:
        a.extensions["kb"].runs.close()


def test_retries_and_presses_on_two_hosts_act_once(two_hosts, hook):
    """A slash command retried by Slack to the other host starts one run; two admins pressing Confirm at
    once on two hosts run the action once (the store's claim), and the one who lost is told."""
    a, b = (Slack(x, hook) for x in two_hosts)
    body = urllib.parse.urlencode({"team_id": "T1", "user_id": "UADM", "user_name": "ada", "command": "/kb",
                                   "text": "run probe-action p", "response_url": hook.url + "/commands/x",
                                   "trigger_id": "13345224609.738474920.8088930838d88f008e0"}).encode()
    assert a.post("/chat/slack", body).get_json()["text"].startswith("Started")
    retried = b.post("/chat/slack", body, {**signed(body, int(time.time()) + 1), "X-Slack-Retry-Num": "1"})
    assert retried.get_json()["text"] == "This command was received already; its answer is on its way."
    action = hook.wait("/commands/x")[0]
    store = two_hosts[0].extensions["kb"].runs.store
    assert len(store.recent(10)) == 1

    gate = threading.Barrier(2)
    paths = []

    def press(slack, user):
        gate.wait()
        paths.append(slack.press(action, "kb_confirm", user=user)[1])

    threads = [threading.Thread(target=press, args=(s, u)) for s, u in ((a, "UADM"), (b, "UADM2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.drain()
    b.drain()
    posted = [m for p in paths for m in hook.at(p)]
    done = [m for m in posted if "*Healthy*: *Done*" in mrkdwn(m)]
    told = [m for m in posted if m.get("response_type") == "ephemeral"]
    assert len(done) >= 1 and len(told) == 1, json.dumps(posted)[:3000]
    in_place = [m for p, m in hook.messages if p in paths and m.get("replace_original")]
    assert "*Healthy*: *Done*" in mrkdwn(in_place[-1])  # what the channel shows last is the verdict
    assert told[0]["text"].startswith(("Not done: ", "That button belongs to an earlier state"))
    run_id = store.recent(10)[0]["id"]
    run = two_hosts[0].extensions["kb"].runs.engine.load(run_id)
    assert [s["outcome"] for s in run["steps"]].count("confirmed") == 1
    assert [e["event"] for e in store.audit_trail(run_id)].count("confirm") == 1

    # the Run button of a search reply, for someone with one target: the run starts there at once
    reply, _ = b.command("FATAL:  sorry, too many clients already", user="UOP")
    code, path, *_ = b.press(reply, "kb_start", user="UOP")
    message = hook.wait(path)[0]
    check_block_kit(message)
    assert message["response_type"] == "in_channel" and "|Connection exhaustion>* on `p`" in mrkdwn(message)
