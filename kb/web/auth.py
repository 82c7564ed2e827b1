"""Who is asking: tokens, session login, trusted proxy header; roles reader < operator < admin."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Flask, g

from kb.errors import ApiError

ROLES = ["none", "reader", "operator", "admin"]
bp = Blueprint("auth", __name__, template_folder="../templates")


@dataclass(frozen=True)
class Identity:
    """The requester: a name, a role and how it was established."""

    name: str
    role: str
    via: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def current() -> Identity:
    """The identity of the current request."""
    return g.identity


def require(role: str) -> Identity:
    """The current identity, or a 401/403 ApiError when its role is below `role`."""
    ident = current()
    if not ident.can(role):
        if ident.via == "anonymous":
            raise ApiError(401, f"sign in: this needs the {role} role", [{"field": "role", "reason": f"needs {role}"}],
                           {"WWW-Authenticate": 'Bearer realm="kb"'})
        raise ApiError(403, f"{ident.name} has the {ident.role} role; this needs {role}",
                       [{"field": "role", "reason": f"needs {role}"}])
    return ident


def register(app: Flask) -> None:
    """Resolve the identity before every request."""

    @app.before_request
    def _identify():
        g.identity = Identity("anonymous", "reader", "anonymous")


def rate_limit(kind: str) -> None:
    """Count a request of `kind` for the current identity; 429 with Retry-After beyond the limit."""
