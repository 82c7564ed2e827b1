"""The JSON responses of /api/v1 for entries, runbooks, targets and run lists, as pydantic models.

The API sends what these models validated and dumped (`sent`), and the OpenAPI document is generated
from the same models, so what is described cannot drift from what is sent: a key the service adds
without a field here fails the API's own tests instead of going out undocumented. They reuse the
content models' own types (front matter literals, version notes, sources, the runbook format).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kb.knowledge.model import EntryMeta, Source, VersionNote
from kb.runbooks import model as runbook_model

Level = EntryMeta.model_fields["level"].annotation
Severity = EntryMeta.model_fields["severity"].annotation
Difficulty = EntryMeta.model_fields["difficulty"].annotation
TargetKind = runbook_model.Runbook.model_fields["target_kind"].annotation
MessageKind = Literal["primary", "detail", "hint", "setting", "other"]
RunStatus = Literal["active", "finished", "failed", "stopped", "abandoned"]
Outcome = Literal["problem", "healthy", "inconclusive"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EntryRef(_Out):
    """An entry in brief, as links to it carry it."""

    slug: str
    title: str
    url: str
    sqlstates: list[str]


class RunbookRef(_Out):
    """A runbook in brief, as links to it carry it."""

    id: str
    title: str
    url: str


class CodeBlock(_Out):
    """A fenced block of a fix step or FAQ answer."""

    lang: str = Field(description="The fence's language (sql, bash, ini, ...); empty when none is given")
    code: str


class EntryItem(_Out):
    """An H3 of a section: a fix step or a FAQ question."""

    id: str
    title: str
    html: str
    text: str
    code: list[CodeBlock]


class EntrySection(_Out):
    """An H2 section of an entry's body."""

    id: Literal["quick-fix", "causes", "fix", "why", "mistakes", "deeper", "faq"]
    title: str
    html: str
    text: str
    items: list[EntryItem]


class Translation(_Out):
    """A catalog message in one of the languages PostgreSQL ships."""

    lang: str = Field(description="gettext language code (de, pt_BR, zh_CN, ...)")
    language: str
    forms: list[str] = Field(description="One form, or one per plural form")


class EntryMessage(_Out):
    """A message template of an entry as the catalog has it, with its translations."""

    id: str
    template: str
    kind: MessageKind
    url: str
    translations: list[Translation]


class EntrySummary(_Out):
    """An entry as lists show it."""

    slug: str
    title: str = Field(description="The error as people quote it")
    url: str
    engine: str = Field(description="postgresql, pgbouncer, or a driver/ORM name")
    sqlstates: list[str]
    messages: list[str] = Field(description="The message templates covered, variable parts as %s")
    level: Level
    severity: Severity
    difficulty: Difficulty
    time_to_fix: str
    tags: list[str]
    summary: str
    summary_html: str
    updated: dt.date


class Entry(EntrySummary):
    """An entry, fully structured, with its companions and runbooks resolved."""

    versions: list[VersionNote] = Field(description="Wording of the message on some server versions")
    related: list[EntryRef]
    runbooks: list[RunbookRef]
    sources: list[Source] = Field(description="What the entry was checked against")
    sections: list[EntrySection]
    translations: list[EntryMessage]


class EntryFilters(_Out):
    """The filters a list was made with (null: not filtered by it)."""

    engine: str | None
    tag: str | None
    sqlstate: str | None
    text: str | None


class EntryFacets(_Out):
    """Every value each filter accepts."""

    engines: list[str]
    tags: list[str]
    sqlstates: list[str]


class EntryList(_Out):
    """Entries sorted by title, with the facets to filter them by."""

    filters: EntryFilters
    facets: EntryFacets
    count: int
    entries: list[EntrySummary]


class RunbookSummary(_Out):
    """A runbook as lists show it."""

    id: str
    title: str
    summary: str
    url: str
    target_kind: TargetKind
    entries: list[str] = Field(description="Slugs of the entries it diagnoses")


class RunbookList(_Out):
    """Every runbook, by id."""

    count: int
    runbooks: list[RunbookSummary]


class Runbook(runbook_model.Runbook):
    """A runbook in the runbook file format, with its page and its entries resolved."""

    entries: list[EntryRef]
    url: str


class Target(_Out):
    """A database runs may use: what clients may see of it, never its connection string."""

    name: str
    description: str
    kind: TargetKind
    cap: int = Field(description="Connections all runs on it may hold at once")
    roles: list[str] = Field(description="Roles that may run against it")
    reserved_connection: bool = Field(description="Whether it has a second DSN for when the server is full")


class TargetList(_Out):
    """The targets the caller may run against."""

    count: int
    targets: list[Target]


class RunHeader(_Out):
    """A run as lists show it."""

    id: str
    runbook: str = Field(description="The runbook's id")
    target: str
    status: RunStatus
    created_by: str
    created_at: str = Field(description="UTC, ISO 8601")
    updated_at: str
    verdict: str | None = Field(description="The conclusion's verdict, once it concluded")
    url: str
    outcome: Outcome | None = Field(description="null while the run is active")


class RunList(_Out):
    """The newest runs on targets the caller may use."""

    count: int
    runs: list[RunHeader]


def sent(model: type[BaseModel], data: dict) -> dict:
    """`data` validated by `model` and dumped back with the same keys: what the API sends."""
    return model.model_validate(data).model_dump(mode="json", by_alias=True, exclude_unset=True)
