"""The project's own exception types; the CLI and the HTTP error handler translate them."""

from __future__ import annotations


class KbError(Exception):
    """Base class of every error kb raises on purpose."""


class ContentInvalid(KbError):
    """Content or runbooks failed validation; carries every problem found."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(KbError):
    """The configuration file or environment is unusable."""


class ApiError(KbError):
    """A request that cannot be served; rendered in the one error shape."""

    def __init__(self, status: int, error: str, errors: list | None = None, headers: dict | None = None):
        self.status = status
        self.error = error
        self.errors = errors or []
        self.headers = headers or {}
        super().__init__(error)


class NotFound(ApiError):
    """A slug, runbook, target or run that does not exist."""

    def __init__(self, what: str):
        super().__init__(404, f"{what} not found")


class BadRequest(ApiError):
    """Parameters or a body that do not validate."""

    def __init__(self, error: str, errors: list | None = None):
        super().__init__(400, error, errors)


class RunStateError(ApiError):
    """A run cannot do what was asked in its current state (409)."""

    def __init__(self, error: str):
        super().__init__(409, error)
