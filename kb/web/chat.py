"""Slack's slash command (POST /chat/slack), which Mattermost speaks too, and Slack's button presses
(POST /chat/slack/interactions).

`/kb <error text>` answers with the matched messages and entries (Block Kit: quick fix, a button to
open the entry and one to run its runbook); a paste with no known message is answered to the asker
alone. `/kb run <runbook> <target> [name=value ...]` validates like the API, starts a run, and answers
at once; the run's diagnostics go to the worker (kb.chat.worker), which posts the run's one message in
the channel through the request's `response_url`. Pressing that message's buttons (an answer, Confirm,
Skip) is answered at once too, and the worker replaces the message in place as the run advances.
Nothing slow ever runs inside a request, so no request outlives Slack's 3 seconds.

Requests carry Slack's signature, checked with slack_sdk's SignatureVerifier:
v0=HMAC-SHA256(secret, "v0:<timestamp>:<body>"). A request is refused with 401 in the one error shape
when its timestamp is more than 5 minutes away, when its signature is wrong, or when it is a replay:
every accepted (timestamp, signature) is recorded in the run store until the timestamp has left the
5-minute window, so a captured request sent again, to any worker or host sharing the store, is
refused. Slack's own retry of a request (X-Slack-Retry-Num) is signed anew, so each accepted body is
recorded too (a slash command's carries its unique trigger_id, a press its action_ts): a body seen
before is acknowledged and not acted on, so a retry never starts a second run or presses a button
twice. (Mattermost sends the same form fields but signs nothing: see the README's Chat section.)

Who is asking is the Slack team and user id (the identity `chat:T0001:U024BE7LH`): `[chat_users]`
maps a user id (`U024BE7LH`), or a team and user id (`T0001:U024BE7LH`, which wins), to a role.
`user_name` is mutable and not unique, so it never grants a role and never names the identity.
Searches and run starts count against the same per-identity rate limits as the API; beyond them the
answer is an ephemeral message saying when to retry. Answering needs operator, confirming admin.

Every value from the target or a user is escaped with Slack's rule (&, <, > as entities) before it
is posted (kb.chat.blocks), so an application_name such as `<!channel>` cannot mention a channel or
forge a link.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import time

from flask import Blueprint, Response, current_app, g, request
from slack_sdk.signature import Clock, SignatureVerifier

from kb.chat import flow
from kb.chat.blocks import notice, search_message
from kb.chat.worker import Poster, Worker
from kb.errors import ApiError
from kb.runbooks.transcript import slack_link, slack_text
from kb.web import auth
from kb.web.auth import Identity
from kb.web.present import json_response, service

bp = Blueprint("chat", __name__)
MAX_AGE = 300
REPLAY_MARGIN = 60  # a replay record outlives the window a little, for hosts whose clocks differ slightly
BODY_MEMORY = 1800  # a body is remembered for as long as its response_url may be used (30 minutes)
USAGE = ("Usage: `/kb <error text>` to find an entry; `/kb run <runbook> <target> [name=value ...]` to start "
         "a guided run, e.g. `/kb run connection-exhaustion prod saturation_pct=90`.")


class _Clock(Clock):
    """slack_sdk's clock, stopped at the time this request is checked against."""

    def __init__(self, at: float):
        self.at = at

    def now(self) -> float:
        return self.at


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None) -> int:
    """The request's timestamp; ApiError(401) unless the Slack signature is valid and fresh."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise ApiError(401, "missing or malformed X-Slack-Request-Timestamp") from None
    at = time.time() if now is None else now
    if abs(at - ts) > MAX_AGE:
        raise ApiError(401, "stale request: timestamp older than 5 minutes")
    if not signature or not SignatureVerifier(secret, _Clock(at)).is_valid(body, str(ts), signature):
        raise ApiError(401, "bad request signature")
    return ts


def refuse_replay(ts: int, signature: str) -> None:
    """ApiError(401) if this signed request was accepted before (by any worker or host)."""
    store = service().store
    if not store.record_once(f"slack:{ts}:{signature}", ts + MAX_AGE + REPLAY_MARGIN):
        raise ApiError(401, "replayed request: this signed request was already received")


def first_sighting(body: bytes) -> bool:
    """Whether this body arrives for the first time (a retry of Slack's is the same body, signed anew)."""
    key = "slack-body:" + hashlib.sha256(body).hexdigest()
    return service().store.record_once(key, time.time() + BODY_MEMORY)


def _authenticate(cfg) -> None:
    """Slack's signature: fresh, valid and not seen before."""
    signature = request.headers.get("X-Slack-Signature", "")
    ts = verify(cfg.slack_signing_secret, request.headers.get("X-Slack-Request-Timestamp", ""), request.get_data(),
                signature)
    refuse_replay(ts, signature)


def identity(cfg, form) -> Identity:
    """The chat user, named `chat:<team_id>:<user_id>` and given a role by its ids (team-qualified
    key first), never by user_name."""
    user_id = (form.get("user_id") or "").strip()
    team_id = (form.get("team_id") or "").strip()
    key = f"{team_id}:{user_id}" if team_id else user_id
    role = (cfg.chat_users.get(key) or cfg.chat_users.get(user_id)) if user_id else None
    return Identity(f"chat:{key or 'unknown'}", role or "reader", "chat")


def _rate_limited(kind: str) -> str | None:
    """The API's per-identity limit for `kind`, counted for the chat identity; the message when over it."""
    try:
        auth.rate_limit(kind)
    except ApiError as exc:
        if exc.status != 429:
            raise
        return exc.error
    return None


def worker() -> Worker:
    """This app's chat worker (one thread pool per process)."""
    return current_app.extensions.setdefault("kb_chat_worker", Worker())


def _reply(text: str, in_channel: bool = False):
    return json_response(notice(text, response_type="in_channel" if in_channel else "ephemeral"))


def _enabled(mattermost: bool = False):
    """The config, once the request is proven to come from the chat service: Slack's signature, or
    (slash commands only) a Mattermost command token, compared in constant time."""
    cfg = current_app.extensions["kb_config"]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if mattermost and scheme.lower() == "token":
        tokens = [t.strip() for t in (cfg.mattermost_token or "").split(",") if t.strip()]
        if not tokens:
            raise ApiError(404, "not found")
        if not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens):
            raise ApiError(401, "unknown Mattermost command token")
        return cfg
    if not cfg.slack_signing_secret:
        raise ApiError(404, "not found")
    _authenticate(cfg)
    return cfg


def parse_run(text: str) -> tuple[str, str, dict]:
    """`run <runbook> <target> [name=value ...]` -> (runbook, target, params); ValueError with the usage."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = []
    if len(words) < 3:
        raise ValueError("Usage: `/kb run <runbook> <target> [name=value ...]`, e.g. "
                         "`/kb run connection-exhaustion prod saturation_pct=90`.")
    params = {}
    for word in words[3:]:
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise ValueError(f"Parameters are written name=value; {slack_text(word[:100])!s} is not.")
        params[name] = value
    return words[1], words[2], params


@bp.post("/chat/slack")
def slack():
    cfg = _enabled(mattermost=True)
    ident = g.identity = identity(cfg, request.form)  # rate limits and audit count the chat user
    if request.form.get("trigger_id") and not first_sighting(request.get_data()):
        return _reply("This command was received already; its answer is on its way.")
    text = (request.form.get("text") or "").strip()
    who = slack_text(request.form.get("user_name") or request.form.get("user_id") or "you")
    base = request.host_url.rstrip("/")
    svc = service()
    if not text or text == "help":
        return _reply(USAGE)
    if text.split()[0] == "run":
        try:
            runbook, target, params = parse_run(text)
        except ValueError as exc:
            return _reply(str(exc))
        if not ident.can("operator"):
            return _reply(f"{who} has the {ident.role} role; starting a run needs operator.")
        limited = _rate_limited("runs")
        if limited:
            return _reply(slack_text(limited))
        try:  # validates runbook, target and parameters as the API does; runs no step yet
            run = svc.runs.start(runbook, target, params, ident, auto=False)
        except ApiError as exc:
            why = "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in exc.errors if isinstance(e, dict))
            return _reply(f"Could not start: {slack_text(exc.error)}" + (f" ({slack_text(why)})" if why else ""))
        poster = Poster(request.form.get("response_url") or "")
        worker().submit(flow.continue_run, svc, ident, run["id"], poster, base)
        link = slack_link(base + run["links"]["page"], f"run {run['id']}")
        return _reply(f"Started {link} of *{slack_text(run['runbook']['title'])}* on `{slack_text(run['target'])}`; "
                      "its message follows in the channel as the run advances.")
    limited = _rate_limited("search")
    if limited:
        return _reply(slack_text(limited))
    try:
        result = svc.search_text(text, limit=3)
    except ApiError as exc:
        return _reply(slack_text(exc.error))
    return json_response(search_message(result, base, svc.catalog))


def _payload() -> dict:
    try:
        data = json.loads(request.form.get("payload") or "")
    except ValueError:
        raise ApiError(400, "the form field payload must hold the interaction's JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the interaction payload must be a JSON object")
    return data


@bp.post("/chat/slack/interactions")
def interactions():
    """A Block Kit button press (`block_actions`): acknowledged at once, carried out by the worker."""
    cfg = _enabled()
    data = _payload()
    ack = Response(status=200)
    if data.get("type") != "block_actions" or not first_sighting(request.get_data()):
        return ack  # other interaction types are not used; a body seen before was handled already
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    team = data.get("team") if isinstance(data.get("team"), dict) else {}
    ident = g.identity = identity(cfg, {"user_id": str(user.get("id") or ""),
                                        "team_id": str(team.get("id") or user.get("team_id") or "")})
    who = slack_text(user.get("username") or user.get("name") or user.get("id") or "someone")
    actions = data.get("actions") if isinstance(data.get("actions"), list) else []
    act = actions[0] if actions and isinstance(actions[0], dict) else {}
    kind = str(act.get("action_id") or "").split(":")[0]
    try:
        value = json.loads(act.get("value") or "{}")
    except (TypeError, ValueError):
        value = {}
    if not isinstance(value, dict):
        value = {}
    poster = Poster(str(data.get("response_url") or ""))
    base = request.host_url.rstrip("/")
    svc = service()
    if kind in ("kb_answer", "kb_confirm", "kb_decline"):
        worker().submit(flow.press, svc, ident, who, kind[3:], value, poster, base)
    elif kind in ("kb_start", "kb_start_on"):
        if not ident.can("operator"):
            worker().submit(flow.tell, poster, f"{who} has the {ident.role} role; starting a run needs operator.")
            return ack
        limited = _rate_limited("runs")
        if limited:
            worker().submit(flow.tell, poster, slack_text(limited))
        elif kind == "kb_start":
            worker().submit(flow.offer_targets, svc, ident, str(value.get("rb", "")), poster, base)
        else:
            worker().submit(flow.start, svc, ident, str(value.get("rb", "")), str(value.get("t", "")), poster, base)
    return ack  # kb_open and kb_open_fix are links: Slack opens them, nothing to do here
