"""`kb check`'s view of the entries against the message catalog.

- A PostgreSQL entry's template (front matter `messages` and `versions[].message`) should be a
  catalog template, or an instance of one with some values written in. One that is neither is
  either mistyped or not PostgreSQL's: pooler and driver entries (engine other than `postgresql`)
  and client-side entries (`level: client`) are exempt, as are templates listed under the entry's
  `other_messages` (what a driver, tool or managed service's fork prints inside a PostgreSQL entry)
  and wordings the entry's `versions` notes give for majors before 13 only.
- A `versions` note claims its message for some majors; the catalog knows, from each major's
  binaries, which of 13-18 print it. A claimed major whose binary lacks it is a warning.
"""

from __future__ import annotations

import re

from kb.knowledge.problems import Problem
from kb.messages.catalog import MessageCatalog
from kb.messages.match import MessageMatcher
from kb.messages.formats import template_key
from kb.service.finder import instance_of

KNOWN = range(13, 19)


def majors_of(spec: str) -> set[int] | None:
    """'13-16' / '16+' / '<= 15' / '< 16' / 'all' / '15' / '13, 15' -> majors within 13-18 (None if unreadable)."""
    out: set[int] = set()
    for part in re.split(r"\s*,\s*|\s+and\s+", spec.strip().lower()):
        part = part.strip()
        if not part:
            continue
        if part in ("all", "every", "13+"):
            out.update(KNOWN)
        elif m := re.fullmatch(r"(\d+)(?:\.\d+)?\s*-\s*(\d+)(?:\.\d+)?", part):
            out.update(v for v in KNOWN if int(m.group(1)) <= v <= int(m.group(2)))
        elif m := re.fullmatch(r"(\d+)(?:\.\d+)?\s*\+|>=\s*(\d+)(?:\.\d+)?", part):
            out.update(v for v in KNOWN if v >= int(m.group(1) or m.group(2)))
        elif m := re.fullmatch(r"<=\s*(\d+)(?:\.\d+)?", part):
            out.update(v for v in KNOWN if v <= int(m.group(1)))
        elif m := re.fullmatch(r"<\s*(\d+)(?:\.\d+)?", part):
            out.update(v for v in KNOWN if v < int(m.group(1)))
        elif m := re.fullmatch(r"(\d+)(?:\.\d+)?", part):
            out.update(v for v in KNOWN if v == int(m.group(1)))
        else:
            return None
    return out


def catalog_messages_for(template: str, messages: MessageCatalog, matcher: MessageMatcher, by_key: dict) -> list:
    """The catalog messages a written template is (exactly, or as an instance with values filled in)."""
    out = list(by_key.get(template_key(template), ()))
    for f, _fixed in instance_of(matcher, template):
        out += [f.message, *f.also]  # every template that reads this text (16's "%s." and 13-15's literal)
    return out


def message_problems(entries, messages: MessageCatalog, matcher: MessageMatcher) -> list[Problem]:
    by_key = messages.by_key
    problems: list[Problem] = []
    for e in entries:
        exempt = e.meta.engine != "postgresql" or e.meta.level == "client"
        client = {template_key(t) for t in e.meta.other_messages}
        for v in e.meta.versions:  # an older major's wording
            if v.message and majors_of(v.versions) == set():
                client.add(template_key(v.message))
        claims = [(("messages", i), f"messages[{i}]", t, None) for i, t in enumerate(e.meta.messages)]
        claims += [(("versions", i, "message"), f"versions[{i}].message", v.message, v.versions)
                   for i, v in enumerate(e.meta.versions) if v.message]
        for loc, field, template, spec in claims:
            found = catalog_messages_for(template, messages, matcher, by_key)
            line = e.lines.line(loc)
            if not found:
                if not exempt and template_key(template) not in client:
                    problems.append(Problem(e.path, line, field,
                                            f"{template!r} is in no PostgreSQL 13-18 message catalog or binary; if a "
                                            "driver, tool or fork prints it, list it under other_messages", "warning"))
                continue
            if spec is None:
                continue
            claimed = majors_of(spec)
            if claimed is None:
                continue
            have = set().union(*(set(m.versions) for m in found))
            unknown = set().union(*(set(m.unsure) for m in found))
            lacking = sorted(claimed - have - unknown)
            if lacking and have:
                problems.append(Problem(e.path, line, f"{field}",
                                        f"claims {spec!r}, but the binaries of {', '.join(map(str, lacking))} lack "
                                        f"this message (it is in {', '.join(map(str, sorted(have)))})", "warning"))
    return problems
