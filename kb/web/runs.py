"""The run pages: start form, the stepper at /runs/<id>, history, transcript download."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("runs", __name__, template_folder="../templates")
