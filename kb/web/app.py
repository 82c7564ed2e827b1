"""The application factory."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from flask import Flask, request
from flask_compress import Compress

from kb.service import Service
from kb.settings import Config, load_config, shipped
from kb.web import auth

# Pages use only their own script and stylesheet (no inline code), so the policy can be strict: no
# other origin's code, no framing (clickjacking on the confirm button), forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# The runbook and run pages lay out their graph with Graphviz compiled to WebAssembly (static/vendor/viz).
# Compiling WebAssembly needs 'wasm-unsafe-eval'; it permits WebAssembly only (JavaScript eval stays
# refused), and only those two pages get it.
GRAPH_PAGES = {"pages.runbook", "runs.show"}
GRAPH_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")


def _security_headers(resp):
    if request.endpoint in GRAPH_PAGES and resp.mimetype == "text/html":
        resp.headers.setdefault("Content-Security-Policy", GRAPH_CSP)
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    return resp


# gzip, which every HTTP client takes, for text above the size where compressing pays (/errors is
# 176 KB of HTML). Of streamed responses only static files are compressed (they end, and nothing
# waits for a chunk), so a stream meant to be read as it comes never waits in a compressor's buffer.
COMPRESS = {
    "COMPRESS_ALGORITHM": ["gzip"],
    "COMPRESS_ALGORITHM_STREAMING": ["gzip"],
    "COMPRESS_MIMETYPES": ["text/html", "application/json", "text/css", "text/javascript", "application/javascript",
                           "image/svg+xml", "text/markdown"],
    "COMPRESS_MIN_SIZE": 500,
    "COMPRESS_REGISTER": False,  # _compress decides which responses it sees
}


def _compress(compress):
    """Flask-Compress's hook for the responses it may compress."""

    def after(resp):
        # a range of a file is a range of its identity bytes, which gzip would misplace
        if resp.status_code == 206 or (resp.is_streamed and request.endpoint != "static"):
            return resp
        if request.endpoint == "static" and resp.status_code == 200 and request.method in ("GET", "HEAD"):
            etag, weak = resp.get_etag()
            if etag and not weak and request.if_none_match.contains(f"{etag}:gzip"):
                # the client's gzip copy is current: say 304 without gzipping the file again to find out
                # (1.3 MB of Graphviz takes a tenth of a second)
                resp.set_etag(f"{etag}:gzip")
                resp.make_conditional(request)
        close = getattr(resp.response, "close", None)
        if close is not None:  # Flask-Compress swaps a file's body for its gzip and would leave the file open
            resp.call_on_close(close)
        return compress.after_request(resp)

    return after


def _secret_key(cfg: Config) -> str:
    if cfg.secret_key:
        return cfg.secret_key
    path = cfg.instance_path / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(config: Config | dict | None = None) -> Flask:
    """Build the app; raises ContentInvalid (every problem) when content does not validate."""
    cfg = config if isinstance(config, Config) else load_config(config)
    app = Flask(__name__, static_folder=str(shipped("static")), static_url_path="/static",
                instance_path=str(cfg.instance_path))
    app.config.update(
        SECRET_KEY=_secret_key(cfg),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="kb_session",
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=256 * 1024,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=auth.SESSION_HOURS),
        **COMPRESS,
    )
    logging.getLogger("kb").setLevel(cfg.log_level)
    app.extensions["kb"] = Service.from_config(cfg)
    app.extensions["kb_config"] = cfg

    from kb.web import api, chat, errors, pages, runs

    from kb.web.present import language_name, outcome_label, slots

    errors.register(app)
    # registered first so it runs last, on the response every other hook has finished with
    app.after_request(_compress(Compress(app)))
    app.after_request(_security_headers)
    app.jinja_env.filters["slots"] = slots
    app.jinja_env.filters["outcome_label"] = outcome_label
    app.jinja_env.filters["language"] = language_name
    auth.register(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(runs.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(chat.bp)
    return app
