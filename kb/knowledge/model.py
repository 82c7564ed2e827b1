"""The error entry: front matter schema (pydantic) and the structured body."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
TAG_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
SQLSTATE_RE = re.compile(r"^[0-9A-Z]{5}$")

# Body sections in the order pages show them; `required` ones must be present.
SECTIONS = [
    ("quick-fix", "Quick fix", True),
    ("causes", "What causes it", True),
    ("fix", "How to fix it", True),
    ("why", "Why it happens", True),
    ("mistakes", "Common debug mistakes", True),
    ("deeper", "When it signals a deeper problem", True),
    ("faq", "FAQ", True),
]
SECTION_BY_TITLE = {title.lower(): (key, title) for key, title, _ in SECTIONS}


class Source(BaseModel):
    """Something an entry was checked against."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=3)
    url: str | None = None


class VersionNote(BaseModel):
    """Wording of the message on some server versions."""

    model_config = ConfigDict(extra="forbid")
    versions: str = Field(min_length=1, description="e.g. '<= 15', '16+', 'all'")
    message: str = Field(min_length=3)
    note: str | None = None


class EntryMeta(BaseModel):
    """The front matter of an error entry."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=5)
    engine: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    sqlstate: list[str] = []
    messages: list[str] = Field(min_length=1)
    level: Literal["PANIC", "FATAL", "ERROR", "WARNING", "LOG", "client"] = "ERROR"
    severity: Literal["critical", "high", "medium", "low"]
    difficulty: Literal["beginner", "intermediate", "advanced"]
    time_to_fix: str = Field(min_length=2)
    versions: list[VersionNote] = []
    # templates this entry quotes that PostgreSQL 13-18 itself does not print: a driver's, a pooler's,
    # a tool's or a managed service's fork's (exempt from `kb check`'s catalog warning)
    other_messages: list[str] = []
    related: list[str] = []
    runbooks: list[str] = []
    tags: list[str] = []
    sources: list[Source] = Field(min_length=1)
    updated: dt.date

    @field_validator("sqlstate")
    @classmethod
    def _sqlstates(cls, value: list[str]) -> list[str]:
        for code in value:
            if not SQLSTATE_RE.match(code):
                raise ValueError(f"{code!r} is not a 5-character SQLSTATE")
        return value

    @field_validator("messages")
    @classmethod
    def _messages(cls, value: list[str]) -> list[str]:
        for msg in value:
            if len(msg.strip()) < 8:
                raise ValueError(f"message template {msg!r} is too short to identify an error")
        return value

    @field_validator("related", "runbooks")
    @classmethod
    def _slugs(cls, value: list[str]) -> list[str]:
        for item in value:
            if not SLUG_RE.match(item):
                raise ValueError(f"{item!r} is not a lowercase-hyphenated name")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for item in value:
            if not TAG_RE.match(item):
                raise ValueError(f"tag {item!r}: lowercase letters, digits, '-' and '_'")
        return value


@dataclass
class Subsection:
    """An H3 inside a section: a fix step or a FAQ question."""

    id: str
    title: str
    html: str
    text: str
    code: list[dict] = field(default_factory=list)  # [{"lang": "sql", "code": "..."}]


@dataclass
class Section:
    """An H2 section of the body."""

    key: str
    title: str
    html: str
    text: str
    items: list[Subsection] = field(default_factory=list)


@dataclass
class Entry:
    """A loaded, validated error entry."""

    slug: str
    path: str
    meta: EntryMeta
    summary: str
    sections: dict[str, Section]
    summary_html: str = ""
    lines: object = None  # YamlLines of the front matter, for problems found after loading

    @property
    def url(self) -> str:
        return f"/errors/{self.slug}"

    def as_dict(self, full: bool = True) -> dict:
        """Plain data for the JSON API and templates."""
        m = self.meta
        data = {
            "slug": self.slug,
            "title": m.title,
            "url": self.url,
            "engine": m.engine,
            "sqlstates": m.sqlstate,
            "messages": m.messages,
            "level": m.level,
            "severity": m.severity,
            "difficulty": m.difficulty,
            "time_to_fix": m.time_to_fix,
            "tags": m.tags,
            "summary": self.summary,
            "summary_html": self.summary_html,
            "updated": m.updated.isoformat(),
        }
        if full:
            data.update({
                "versions": [v.model_dump() for v in m.versions],
                "related": m.related,
                "runbooks": m.runbooks,
                "sources": [s.model_dump() for s in m.sources],
                "sections": [
                    {
                        "id": s.key,
                        "title": s.title,
                        "html": s.html,
                        "text": s.text,
                        "items": [
                            {"id": i.id, "title": i.title, "html": i.html, "text": i.text, "code": i.code}
                            for i in s.items
                        ],
                    }
                    for key, _, _ in SECTIONS
                    if (s := self.sections.get(key))
                ],
            })
        return data
