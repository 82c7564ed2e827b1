"""The runbook format: typed parameters, four step kinds and declarative conditions (pydantic)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, model_validator

NAME = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in", "is null", "is not null", "contains")
UNARY_OPS = ("is null", "is not null")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """A typed, bounded runbook parameter."""

    type: Literal["int", "float", "str", "bool", "choice"]
    label: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    max_length: int = 63
    pattern: str | None = None
    choices: list[str] | None = None
    help: str | None = None

    @model_validator(mode="after")
    def _check(self) -> "Param":
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter needs `choices`")
        if self.pattern is not None:
            re.compile(self.pattern)
        if self.default is not None:
            coerce_param(self, self.default)
        return self


def coerce_param(param: Param, value: Any) -> Any:
    """The value converted to the parameter's type; ValueError saying why it does not fit."""
    t = param.type
    if t == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "on", "1"):
            return True
        if str(value).lower() in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if t in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            num = int(str(value).strip()) if t == "int" else float(str(value).strip())
        except ValueError:
            raise ValueError(f"expected {'an integer' if t == 'int' else 'a number'}, got {str(value)[:40]!r}") from None
        if not math.isfinite(num):  # "nan" passes every bound and is not JSON
            raise ValueError(f"expected a finite number, got {str(value)[:40]!r}")
        if param.min is not None and num < param.min:
            raise ValueError(f"must be at least {param.min:g}")
        if param.max is not None and num > param.max:
            raise ValueError(f"must be at most {param.max:g}")
        return num
    text = str(value)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: stored, it would break every page that lists the run
        raise ValueError("holds a lone UTF-16 surrogate, which is not text") from None
    if t == "choice":
        if text not in (param.choices or []):
            raise ValueError(f"must be one of {', '.join(param.choices or [])}")
        return text
    if len(text) > param.max_length:
        raise ValueError(f"must be at most {param.max_length} characters")
    if param.pattern and not re.fullmatch(param.pattern, text):
        raise ValueError(f"must match {param.pattern}")
    return text


class ParamRef(_Strict):
    """A comparison value taken from a run parameter."""

    param: str


class Leaf(_Strict):
    """One comparison: a result column (first/any/all rows), the row count, or a parameter."""

    column: str | None = None
    row_count: bool = False
    param: str | None = None
    rows: Literal["first", "any", "all"] = "first"
    op: Literal[OPS]
    value: Any = None

    @model_validator(mode="after")
    def _subject(self) -> "Leaf":
        subjects = [self.column is not None, self.row_count, self.param is not None]
        if sum(subjects) != 1:
            raise ValueError("a condition compares exactly one of `column`, `row_count: true` or `param`")
        if self.op not in UNARY_OPS and self.value is None:
            raise ValueError(f"operator {self.op!r} needs a `value`")
        if isinstance(self.value, dict):
            self.value = ParamRef.model_validate(self.value)
        return self


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    not_: Condition = Field(alias="not")


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return key
        return "leaf"
    return {AllOf: "all", AnyOf: "any", NotOf: "not"}.get(type(value), "leaf")


Condition = Annotated[
    Union[Annotated[AllOf, Tag("all")], Annotated[AnyOf, Tag("any")],
          Annotated[NotOf, Tag("not")], Annotated[Leaf, Tag("leaf")]],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class Branch(_Strict):
    """`when` a condition holds go to a step; a branch without `when` is the `otherwise`."""

    when: Condition | None = None
    otherwise: bool = False
    goto: str
    say: str | None = None  # words shown with the branch, e.g. "slots nearly exhausted"

    @model_validator(mode="after")
    def _shape(self) -> "Branch":
        if (self.when is None) == (not self.otherwise):
            raise ValueError("a branch has either `when` or `otherwise: true`")
        return self


class SqlVariant(_Strict):
    """SQL used from a server major version on (e.g. 16 for `reserved_connections`)."""

    min_version: int = Field(ge=9, le=99)
    sql: str = Field(min_length=6)


class _Step(_Strict):
    title: str = Field(min_length=3)
    purpose: str | None = None


class DiagnosticStep(_Step):
    """Read-only SQL whose result feeds the branches."""

    kind: Literal["diagnostic"]
    sql: str = Field(min_length=4)
    variants: list[SqlVariant] = []
    columns: list[str] | None = None  # declared result columns, checked against conditions
    connection: Literal["default", "reserved"] = "default"
    timeout_ms: int | None = Field(default=None, ge=10, le=600_000)
    branches: list[Branch] = Field(min_length=1)
    on_error: dict[str, str] = {}


class Answer(_Strict):
    value: str = Field(pattern=NAME)
    label: str
    goto: str


class QuestionStep(_Step):
    """Asks the person something the database cannot tell."""

    kind: Literal["question"]
    question: str
    answers: list[Answer] = Field(min_length=2)


class ActionResult(_Strict):
    """What a confirmed action did, in words: "<verb> <n> <noun>", e.g. "terminated 6 sessions"."""

    verb: str = Field(min_length=2)  # "terminated"
    noun: str = Field(min_length=1)  # one of them: "session"
    plural: str | None = None  # several; noun + "s" when not given
    column: str | None = None  # a boolean result column: only rows where it is true were done
    count: str | None = None  # or a column of the first row holding how many were done

    @model_validator(mode="after")
    def _one_way(self) -> "ActionResult":
        if self.column is not None and self.count is not None:
            raise ValueError("count the rows where `column` is true, or read `count` from the first row, not both")
        return self

    def nouns(self, n: int) -> str:
        """The noun for n of them."""
        return self.noun if n == 1 else (self.plural or self.noun + "s")


class ActionStep(_Step):
    """Writes; shows what the preview query says it would affect, runs only when confirmed."""

    kind: Literal["action"]
    preview_sql: str = Field(min_length=6)
    sql: str = Field(min_length=6)
    preview_columns: list[str] | None = None
    result: ActionResult | None = None  # its result in words; without it, the command tag in words
    then: str
    on_decline: str
    on_error: dict[str, str] = {}


class FixLink(_Strict):
    entry: str
    section: str | None = None  # an anchor on the entry page, e.g. "fix" or a fix step id
    label: str | None = None


class ConclusionStep(_Step):
    """The verdict and the fix to apply."""

    kind: Literal["conclusion"]
    verdict: str
    # what the data showed: a cause (problem), nothing wrong with everything visible (healthy), or
    # not enough seen to say (inconclusive: could not connect, could not see, lacked a privilege)
    outcome: Literal["problem", "healthy", "inconclusive"]
    status: Literal["ok", "warning", "critical", "unknown"] = "warning"
    body: str = ""
    fix: list[FixLink] = []


Step = Annotated[Union[DiagnosticStep, QuestionStep, ActionStep, ConclusionStep], Field(discriminator="kind")]


class Runbook(_Strict):
    """A guided runbook."""

    id: str = Field(pattern=NAME)
    title: str
    summary: str
    target_kind: Literal["postgresql", "pgbouncer"] = "postgresql"
    entries: list[str] = []
    scenario: str | None = None  # the reproduction in kb.scenarios that puts a cluster in this state
    params: dict[str, Param] = {}
    start: str
    steps: dict[str, Step] = Field(min_length=1)
    _path: str = PrivateAttr("")  # the file it came from, for problems found after loading
    _lines: object = PrivateAttr(None)  # its YamlLines, likewise

    def as_dict(self) -> dict:
        """Plain data for the API."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["url"] = f"/runbooks/{self.id}"
        return data
