"""Slack-compatible slash command endpoint (POST /chat/slack)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("chat", __name__)
