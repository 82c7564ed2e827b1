"""One error handler, one error shape: {ok: false, status, error, errors}."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from kb.errors import ApiError
from kb.knowledge.problems import loc_to_field

log = logging.getLogger("kb")


def wants_json() -> bool:
    """JSON for the API, `.json` twins and clients that ask for it; HTML otherwise."""
    if request.path.startswith("/api/") or request.path.endswith(".json") or request.path.startswith("/chat/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > request.accept_mimetypes["text/html"]


def error_body(status: int, error: str, errors: list | None = None) -> dict:
    """The one error shape."""
    return {"ok": False, "status": status, "error": error, "errors": errors or []}


def respond_error(status: int, error: str, errors: list | None = None, headers: dict | None = None):
    """Render an error as JSON or as a page, by what the client wants."""
    if wants_json():
        from kb.web.present import json_response

        resp = json_response(error_body(status, error, errors), status)
    else:
        resp = render_template("pages/error.html", status=status, error=error, errors=errors or [])
        from flask import make_response

        resp = make_response(resp)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def validation_errors(exc: ValidationError) -> list[dict]:
    """pydantic errors as [{field, reason}]."""
    return [{"field": loc_to_field(e["loc"]), "reason": e["msg"]} for e in exc.errors()]


def register(app: Flask) -> None:
    """Install the handlers."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return respond_error(exc.status, exc.error, exc.errors, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {404: "not found", 405: "method not allowed", 413: "request body too large",
                    400: "bad request", 415: "unsupported media type"}
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return respond_error(exc.code or 500, messages.get(exc.code, exc.name.lower()), [], headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond_error(500, "internal error; it has been logged")
