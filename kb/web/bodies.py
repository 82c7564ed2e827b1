"""The JSON request bodies of /api/v1, as pydantic models: the API validates with them, OpenAPI describes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SearchBody(BaseModel):
    """POST /api/v1/search."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="Pasted error text, logs or stack trace")
    limit: int = Field(default=10, ge=1, le=50)


class StartRunBody(BaseModel):
    """POST /api/v1/runs."""

    model_config = ConfigDict(extra="forbid")
    runbook: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = {}
    auto: bool = Field(default=False, description="Run diagnostics until the first question, action or conclusion")


class AdvanceBody(BaseModel):
    """POST /api/v1/runs/<id>/advance."""

    model_config = ConfigDict(extra="forbid")
    step: str | None = Field(default=None, max_length=100,
                             description="The step the client saw; 409 when the run is no longer at it")
    answer: str | None = Field(default=None, max_length=100)
    confirm: bool | None = None
    auto: bool = False
