"""Slack-compatible slash command endpoint (POST /chat/slack), which Mattermost speaks too.

`/kb <error text>` answers with the top matches; `/kb run <runbook> <target>` starts a run and
advances it to its first question, action or conclusion.

Requests carry Slack's signature: v0=HMAC-SHA256(secret, "v0:<timestamp>:<body>"). A request is
refused with 401 in the one error shape when its timestamp is more than 5 minutes away, when its
signature is wrong, or when it is a replay: every accepted (timestamp, signature) is recorded in
the run store until the timestamp has left the 5-minute window, so a captured request sent again,
to any worker or host sharing the store, is refused. Slack does not retry slash commands, so a
genuine request never arrives twice.

Who is asking is the Slack team and user id (the identity `chat:T0001:U024BE7LH`): `[chat_users]`
maps a user id (`U024BE7LH`), or a team and user id (`T0001:U024BE7LH`, which wins), to a role.
`user_name` is mutable and not unique, so it never grants a role and never names the identity.
Searches and run starts count against the same per-identity rate limits as the API; beyond them the
answer is an ephemeral message saying when to retry.

Every value from the target or a user is escaped with Slack's rule (&, <, > as entities) before it
is posted, so an application_name such as `<!channel>` cannot mention a channel or forge a link.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import Blueprint, current_app, g, request

from kb.errors import ApiError
from kb.messages.catalog import LANGUAGE_NAMES
from kb.runbooks.transcript import slack_link, slack_text, transcript
from kb.web import auth
from kb.web.auth import Identity
from kb.web.present import json_response, service

bp = Blueprint("chat", __name__)
MAX_AGE = 300
REPLAY_MARGIN = 60  # a replay record outlives the window a little, for hosts whose clocks differ slightly
MAX_TEXT = 3500


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None) -> int:
    """The request's timestamp; ApiError(401) unless the Slack signature is valid and fresh."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise ApiError(401, "missing or malformed X-Slack-Request-Timestamp") from None
    if abs((now or time.time()) - ts) > MAX_AGE:
        raise ApiError(401, "stale request: timestamp older than 5 minutes")
    base = b"v0:" + str(ts).encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not signature or not hmac.compare_digest(expected, signature):
        raise ApiError(401, "bad request signature")
    return ts


def refuse_replay(ts: int, signature: str) -> None:
    """ApiError(401) if this signed request was accepted before (by any worker or host)."""
    store = service().runs.store
    if not store.record_once(f"slack:{ts}:{signature}", ts + MAX_AGE + REPLAY_MARGIN):
        raise ApiError(401, "replayed request: this signed request was already received")


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


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, never ending inside an entity such as &lt;."""
    if len(text) <= limit:
        return text
    text = text[:limit]
    amp = text.rfind("&")
    if amp > limit - 5 and ";" not in text[amp:]:
        text = text[:amp]
    return text + "\n…"


def _reply(text: str, in_channel: bool = False):
    return json_response({"response_type": "in_channel" if in_channel else "ephemeral", "text": text})


@bp.post("/chat/slack")
def slack():
    cfg = current_app.extensions["kb_config"]
    if not cfg.slack_signing_secret:
        raise ApiError(404, "not found")
    signature = request.headers.get("X-Slack-Signature", "")
    ts = verify(cfg.slack_signing_secret, request.headers.get("X-Slack-Request-Timestamp", ""), request.get_data(),
                signature)
    refuse_replay(ts, signature)
    ident = g.identity = identity(cfg, request.form)  # rate limits and audit count the chat user
    text = (request.form.get("text") or "").strip()
    who = slack_text(request.form.get("user_name") or request.form.get("user_id") or "you")
    base = request.host_url.rstrip("/")
    svc = service()
    if not text or text == "help":
        return _reply("Usage: `/kb <error text>` to find an entry; `/kb run <runbook> <target>` to start a guided run.")
    if text.startswith("run ") or text == "run":
        parts = text.split()
        if len(parts) != 3:
            return _reply("Usage: `/kb run <runbook> <target>`, e.g. `/kb run connection-exhaustion prod`.")
        if not ident.can("operator"):
            return _reply(f"{who} has the {ident.role} role; starting a run needs operator.")
        limited = _rate_limited("runs")
        if limited:
            return _reply(slack_text(limited))
        try:
            run = svc.runs.start(parts[1], parts[2], {}, ident, auto=True)
        except ApiError as exc:
            return _reply(f"Could not start: {slack_text(exc.error)}")
        md = _cut(transcript(run, base, flavor="slack"), MAX_TEXT)
        link = slack_link(base + run["links"]["page"], f"Open run {run['id']}")
        return _reply(f"{slack_text(run['summary'])}\n{link}\n\n{md}", in_channel=True)
    limited = _rate_limited("search")
    if limited:
        return _reply(slack_text(limited))
    try:
        result = svc.search_text(text, limit=3)
    except ApiError as exc:
        return _reply(slack_text(exc.error))
    if result["match"] == "none":
        # only word-similar suggestions: told to the asker alone, never posted to the channel
        lines = [f"• {slack_link(base + r['url'], r['title'])}" for r in result["results"]]
        return _reply(f"{result['notice']}." + ("\nEntries with similar wording (not a match):\n" + "\n".join(lines)
                                                if lines else ""))
    lines = []
    for r in result["results"]:
        line = f"• {slack_link(base + r['url'], r['title'])}"
        if r["sqlstates"]:
            line += f" (SQLSTATE {slack_text(', '.join(r['sqlstates']))})"
        how = {"message": "found in the text", "sqlstate": "SQLSTATE in the text", "related": "companion error"}
        line += f" [{how.get(r['match'], r['match'])}"
        if r.get("lang") and r["lang"] != "en":
            line += f", translated from {slack_text(LANGUAGE_NAMES.get(r['lang'], r['lang']))}"
        line += "]"
        if r["kind"] == "message":
            line += "\n   No entry is written for this message yet."
        else:
            line += f"\n   {slack_text(r['snippet'])}"
        lines.append(line)
    return _reply("Found:\n" + "\n".join(lines), in_channel=True)
