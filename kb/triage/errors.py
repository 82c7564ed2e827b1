"""The one exception log triage raises: a log kb cannot read, said in words (the edges render it)."""

from __future__ import annotations

from kb.errors import ApiError


class TriageError(ApiError):
    """A log that cannot be triaged: binary data, an unknown format, a body over the limit (status 413)."""

    def __init__(self, error: str, status: int = 422, field: str = "body", errors: list | None = None):
        super().__init__(status, error, errors or [{"field": field, "reason": error}])
