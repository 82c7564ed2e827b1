"""Who is asking: API tokens, session login, trusted proxy header; roles reader < operator < admin.

Also CSRF protection for browser POSTs and per-identity rate limits.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
import unicodedata
from dataclasses import dataclass

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session, url_for

from kb.errors import ApiError

ROLES = ["none", "reader", "operator", "admin"]
SESSION_HOURS = 12
READ_ONLY_POSTS = ("/search", "/triage", "/triage.json", "/api/v1/triage")
bp = Blueprint("auth", __name__, template_folder="../templates")
log = logging.getLogger("kb")


@dataclass(frozen=True)
class Identity:
    """The requester: a name, a role and how it was established."""

    name: str
    role: str
    via: str  # token, session, proxy, local, anonymous

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def token_digest(token: str) -> str:
    """Tokens are stored only as this hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh API token (shown once)."""
    return "kb_" + secrets.token_urlsafe(30)


def current() -> Identity:
    """The identity of the current request."""
    return g.identity


def require(role: str) -> Identity:
    """The current identity, or a 401/403 ApiError when its role is below `role`."""
    ident = current()
    if ident.can(role):
        return ident
    state = current_app.extensions["kb_access"]
    if ident.via == "anonymous":
        how = ""
        if not state.configured():
            how = (" No identities are configured and the server is not bound to a loopback address: "
                   "create a token with `kb token create NAME --role operator` and sign in, "
                   "or configure KB_TRUSTED_PROXIES.")
        raise ApiError(401, f"sign in: this needs the {role} role.{how}".replace("..", "."),
                       [{"field": "role", "reason": f"needs {role}"}], {"WWW-Authenticate": 'Bearer realm="kb"'})
    raise ApiError(403, f"{ident.name} has the {ident.role} role; this needs {role}",
                   [{"field": "role", "reason": f"needs {role}"}])


class AccessState:
    """Configuration-derived facts about identities, cached briefly (token count lives in the store)."""

    def __init__(self, app: Flask):
        self.app = app
        cfg = app.extensions["kb_config"]
        self.proxies = []
        for p in cfg.trusted_proxies:
            try:
                self.proxies.append(ipaddress.ip_network(p, strict=False))
            except ValueError:
                from kb.errors import ConfigError

                raise ConfigError(f"KB_TRUSTED_PROXIES: {p!r} is not an address or network") from None
        try:
            self.loopback = ipaddress.ip_address(cfg.host).is_loopback
        except ValueError:
            self.loopback = cfg.host in ("localhost",)
        self.host = cfg.host
        self._tokens_cached = (0.0, False)
        self._tokens_seen: bool | None = None  # None until first looked at
        self.limits = {"search": _parse_rate(cfg.rate_search), "runs": _parse_rate(cfg.rate_runs)}

    def has_tokens(self) -> bool:
        at, value = self._tokens_cached
        if time.monotonic() - at > 2.0:
            value = self.app.extensions["kb"].store.has_active_tokens()
            self._tokens_cached = (time.monotonic(), value)
            if self._tokens_seen is False and value and self.loopback and not (self.proxies or self._users()):
                log.warning("a token was created: browsers that have not signed in are no longer the local "
                            "operator; they can only read (KB_ANONYMOUS_ROLE) until they sign in at /login")
            self._tokens_seen = value
        return value

    def _users(self) -> bool:
        return bool(self.app.extensions["kb_config"].users)

    def configured(self) -> bool:
        cfg = self.app.extensions["kb_config"]
        return bool(self.proxies or cfg.users or self.has_tokens())

    def trusted(self, addr: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(addr or "")
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def local_host(self, host: str) -> bool:
        """Whether a Host header names this machine's loopback (or the address kb is bound to)."""
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        name = name.strip("[]").lower()
        if name in ("localhost", self.host.lower()) or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def _parse_rate(text: str) -> tuple[int, float]:
    count, _, secs = str(text).partition("/")
    return int(count), float(secs or 60)


def rate_limit(kind: str) -> None:
    """Count a request of `kind` for the current identity; 429 with Retry-After beyond the limit."""
    state = current_app.extensions["kb_access"]
    ident = current()
    who = ident.name if ident.via != "anonymous" else f"anon:{request.remote_addr}"
    count, window = state.limits[kind]
    # counted in the run store, so the limit holds across gunicorn workers and hosts
    wait = current_app.extensions["kb"].store.rate_hit(f"{kind}:{who}", count, window)
    if wait is not None:
        secs = max(1, int(wait + 0.999))
        raise ApiError(429, f"too many {kind} requests; retry in {secs} s", [{"field": kind, "reason": "rate limited"}],
                       {"Retry-After": str(secs)})


def resolve(state: AccessState) -> Identity:
    """Work out who is asking, from the strongest evidence down."""
    cfg = current_app.extensions["kb_config"]
    store = current_app.extensions["kb"].store
    authz = request.headers.get("Authorization", "")
    if authz and request.path.startswith("/chat/") and authz.partition(" ")[0].lower() == "token":
        authz = ""  # a Mattermost slash command's token: the chat endpoint checks it, not as an API token
    if authz:
        scheme, _, token = authz.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization must be 'Bearer <token>'", [], {"WWW-Authenticate": 'Bearer realm="kb"'})
        row = store.token_by_hash(token_digest(token.strip()))
        if row is None:
            raise ApiError(401, "unknown or revoked token", [], {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Identity(row["name"], row["role"], "token")
    if session.get("token_id"):
        sid = session.get("sid")
        if sid and store.token_exists(session["token_id"]) and not store.was_recorded(f"logout:{sid}"):
            return Identity(session["name"], session["role"], "session")
        session.clear()
    header = request.headers.get(cfg.proxy_user_header)
    if header and state.proxies and state.trusted(request.remote_addr):
        name = header.strip()[:100]
        return Identity(name, cfg.users.get(name, cfg.proxy_user_role), "proxy")
    if state.loopback and not state.configured():
        return Identity("local", "operator", "local")
    return Identity("anonymous", cfg.anonymous_role, "anonymous")


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _check_csrf() -> None:
    if request.method in ("GET", "HEAD", "OPTIONS") or request.path.startswith("/chat/") or request.path in READ_ONLY_POSTS:
        return  # chat requests are signed; a search or a triage changes nothing (and a log is not JSON)
    if request.routing_exception is not None:  # 404/405 are answered as such
        return
    if g.identity.via == "token":
        return
    if request.path.startswith("/api/"):
        # browsers cannot send application/json cross-site without a CORS preflight, which is never granted
        if not request.is_json:
            raise ApiError(415, "send a JSON body with Content-Type: application/json")
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        raise ApiError(403, "CSRF check failed: reload the page and try again", [{"field": "csrf_token", "reason": "missing or wrong"}])


def register(app: Flask) -> None:
    """Resolve the identity and check CSRF before every request."""
    state = AccessState(app)
    app.extensions["kb_access"] = state
    if state.loopback and not state.configured():
        log.warning("no identities configured and bound to a loopback address: local users act as operators "
                    "(creating the first token ends this: then they read only until they sign in)")
    elif not state.configured():
        log.warning("no identities configured on a non-loopback address: runs are refused until you create a "
                    "token (kb token create NAME --role operator) or configure KB_TRUSTED_PROXIES")

    @app.before_request
    def _identify():
        g.identity = Identity("anonymous", "reader", "anonymous")
        if state.loopback and not state.configured() and not state.local_host(request.host):
            # Local users act as operators, so a page on another site that rebinds its own name to
            # 127.0.0.1 must not reach kb: only a loopback Host is served.
            raise ApiError(421, f"this server answers only to its loopback address, not {request.host[:100]!r}",
                           [{"field": "Host", "reason": "not a loopback name"}])
        g.identity = resolve(state)
        if g.identity.role == "none" and not request.path.startswith(("/login", "/static", "/healthz", "/chat/")):
            require("reader")
        _check_csrf()

    @app.context_processor
    def _inject():
        return {"identity": g.get("identity"), "csrf_token": csrf_token}


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        token = (request.form.get("token") or "").strip()
        row = current_app.extensions["kb"].store.token_by_hash(token_digest(token)) if token else None
        if row is None:
            error = "Unknown or revoked token."
        else:
            csrf = session.get("csrf")
            session.clear()
            session.permanent = True  # signed with a timestamp; Flask refuses it after SESSION_HOURS
            session.update(token_id=row["id"], name=row["name"], role=row["role"], sid=secrets.token_urlsafe(16),
                           csrf=csrf or secrets.token_urlsafe(24))
            return redirect(safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error), (401 if error else 200)


def safe_next(value: str | None) -> str:
    """A path on this site to go to after signing in; "/" for anything else.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so "/\t/evil.example"
    would leave the site: only a plain path with no control character and no backslash is followed.
    """
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    if any(c == "\\" or unicodedata.category(c) == "Cc" for c in value):
        return "/"
    return value


@bp.post("/logout")
def logout():
    sid = session.get("sid")
    if sid:  # a copy of the cookie taken before now stops working too
        current_app.extensions["kb"].store.record_once(f"logout:{sid}", time.time() + SESSION_HOURS * 3600 + 60)
    session.clear()
    return redirect(url_for("pages.index"))
