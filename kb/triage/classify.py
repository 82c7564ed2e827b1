"""What a log message is: a catalog message, an entry's own template (PgBouncer's, older wordings),
or neither; and the normalised text that unrecognised messages are grouped by.

Runs once per distinct message text (the tally caches by text with its variable parts normalised),
so its cost, a catalog match and an entry-template lookup, is paid per kind of line, not per line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Variable parts of a message: quoted values (in the quotes translations use), hex and decimal numbers.
# Linear: each alternative stops at its closing quote or at a character it cannot hold, within bounds.
_VARIABLE = re.compile(r'"[^"\n]{0,200}"|\'[^\'\n]{0,200}\'|»[^«\n]{0,200}«|«[^»\n]{0,200}»|„[^“”\n]{0,200}[“”]'
                       r'|“[^”\n]{0,200}”|\b0x[0-9a-fA-F]+\b|\d+(?:[.:]\d+)*')
_SPACES = re.compile(r"\s+")
NORMAL_CHARS = 300


def normalise(text: str) -> str:
    """A message with its values as placeholders: quoted values as "…", numbers as N, spaces collapsed."""
    def sub(m: re.Match) -> str:
        s = m.group(0)
        if s[0] in "\"'»«„“":
            return s[0] + "…" + s[-1]
        return "0x…" if s.startswith("0x") else "N"
    return _SPACES.sub(" ", _VARIABLE.sub(sub, text[:NORMAL_CHARS * 2]))[:NORMAL_CHARS].strip()


@dataclass(frozen=True)
class Identity:
    """What a message was recognised as."""

    kind: str                 # "entry" or "message"
    template: str             # the English template (the catalog's, or the entry's own)
    message_id: str | None    # the catalog message, when there is one
    slug: str | None          # the entry that explains it
    lang: str                 # the language it was printed in

    @property
    def key(self) -> tuple:
        return (self.message_id or self.template, self.slug)


class Classifier:
    """Recognises messages with the service's message catalog and entries."""

    def __init__(self, svc, engines: tuple[str, ...] = ("postgresql",)):
        self.finder = svc.finder
        self.matcher = svc.finder.matcher
        self.search = svc.search
        self.entries = svc.catalog.entries
        self.engines = engines
        self._catalog_ids: dict[str, set[str]] = {}

    def _entry_ids(self, slug: str) -> set[str]:
        ids = self._catalog_ids.get(slug)
        if ids is None:
            ids = self._catalog_ids[slug] = {m.id for m in self.finder.catalog_templates_of(slug)}
        return ids

    def identify(self, text: str) -> Identity | None:
        """The message `text` (a severity word and a message, as a log line has them) is, or None."""
        if "pgbouncer" in self.engines:
            # PgBouncer's own messages are the entries' templates; a server message it passes on
            # ("cached error: ...") is read from the catalog after them
            return self._from_entries(text, None) or self._from_catalog(text)
        return self._from_catalog(text)

    def _from_catalog(self, text: str) -> Identity | None:
        found = None
        for f in self.matcher.find(text, limit=8):
            if f.message.kind not in ("detail", "hint"):
                found = f
                break
        slug = self.finder.entry_for(found) if found is not None else None
        if slug is not None:
            return Identity("entry", found.message.template, found.message.id, slug, found.lang)
        if "postgresql" in self.engines:
            hit = self._from_entries(text, found)
            if hit is not None:
                return hit
        if found is not None:
            return Identity("message", found.message.template, found.message.id, None, found.lang)
        return None

    def _from_entries(self, text: str, found) -> Identity | None:
        """An entry whose own template is in `text` (for a found catalog message: one that claims it)."""
        for hit in self.search.search(text, limit=5, prose=False):
            matched = hit["matched"]
            if not matched or matched.startswith("SQLSTATE ") or hit["slug"] not in self.entries:
                continue
            if self.entries[hit["slug"]].meta.engine not in self.engines:
                continue
            if found is not None:
                if found.message.id in self._entry_ids(hit["slug"]):
                    return Identity("entry", found.message.template, found.message.id, hit["slug"], found.lang)
                continue
            if self.finder.in_catalog(matched) and "pgbouncer" not in self.engines:
                continue  # a catalog message the matcher did not accept in this context
            return Identity("entry", matched, None, hit["slug"], "en")
        return None
