"""Slack-compatible slash command endpoint (POST /chat/slack), which Mattermost speaks too.

`/kb <error text>` answers with the top matches; `/kb run <runbook> <target>` starts a run and
advances it to its first question, action or conclusion. Requests carry Slack's signature:
v0=HMAC-SHA256(secret, "v0:<timestamp>:<body>"); timestamps older than 5 minutes are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import Blueprint, current_app, request

from kb.errors import ApiError
from kb.runbooks.transcript import transcript
from kb.web.auth import Identity
from kb.web.present import json_response, service

bp = Blueprint("chat", __name__)
MAX_AGE = 300


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None) -> None:
    """Raise ApiError(401) unless the Slack signature is valid and fresh."""
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


def _reply(text: str, in_channel: bool = False):
    return json_response({"response_type": "in_channel" if in_channel else "ephemeral", "text": text})


@bp.post("/chat/slack")
def slack():
    cfg = current_app.extensions["kb_config"]
    if not cfg.slack_signing_secret:
        raise ApiError(404, "not found")
    verify(cfg.slack_signing_secret, request.headers.get("X-Slack-Request-Timestamp", ""), request.get_data(),
           request.headers.get("X-Slack-Signature", ""))
    text = (request.form.get("text") or "").strip()
    user_id = request.form.get("user_id") or ""
    user_name = request.form.get("user_name") or user_id or "chat"
    role = cfg.chat_users.get(user_id) or cfg.chat_users.get(user_name) or "reader"
    ident = Identity(f"chat:{user_name}", role, "chat")
    base = request.host_url.rstrip("/")
    svc = service()
    if not text or text == "help":
        return _reply("Usage: `/kb <error text>` to find an entry; `/kb run <runbook> <target>` to start a guided run.")
    if text.startswith("run ") or text == "run":
        parts = text.split()
        if len(parts) != 3:
            return _reply("Usage: `/kb run <runbook> <target>`, e.g. `/kb run connection-exhaustion prod`.")
        if not ident.can("operator"):
            return _reply(f"{user_name} has the {role} role; starting a run needs operator.")
        try:
            run = svc.runs.start(parts[1], parts[2], {}, ident, auto=True)
        except ApiError as exc:
            return _reply(f"Could not start: {exc.error}")
        md = transcript(run, base)
        if len(md) > 3500:
            md = md[:3500] + "\n…"
        return _reply(f"{run['summary']}\n<{base}{run['links']['page']}|Open run {run['id']}>\n\n{md}", in_channel=True)
    try:
        result = svc.search_text(text, limit=3)
    except ApiError as exc:
        return _reply(exc.error)
    if not result["results"]:
        return _reply("No entry matches that text.")
    lines = [f"• <{base}{r['url']}|{r['title']}>" + (f" (SQLSTATE {', '.join(r['sqlstates'])})" if r["sqlstates"] else "")
             + f"\n   {r['snippet']}" for r in result["results"]]
    return _reply("Top matches:\n" + "\n".join(lines), in_channel=True)
