"""printf-style templates: their placeholders, literal fragments, shape and stable ids.

PostgreSQL's templates use C printf conversions (`%s`, `%d`, `%u`, `%lld`, `%zu`, `%.*s`, `%2$s` in
translations that reorder arguments) plus `%m` (the text of errno). Integer widths differ between
majors and platforms for the same message (15's `%lld` is 18's `%ld`, Windows builds print `%I64d`),
so versions are matched on a template's *shape*, where every integer conversion reads `%d`.
"""

from __future__ import annotations

import hashlib
import re

CONVERSION = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\*(?:\d+\$)?|\d+)?(?:\.(?:\*(?:\d+\$)?|\d+))?"
    r"(?:hh|h|ll|l|L|q|j|z|Z|t|I64)?([diouxXeEfFgGaAcspnm%])")
_CLASS = {**dict.fromkeys("diouxX", "%d"), **dict.fromkeys("eEfFgGaA", "%f"),
          "s": "%s", "m": "%m", "c": "%c", "p": "%p", "n": "%n", "%": "%%"}
_WS = re.compile(r"\s+")


def shape(template: str) -> str:
    """The template with every conversion reduced to its class (%d, %s, %f, %m, ...), trailing newlines dropped."""
    return CONVERSION.sub(lambda m: _CLASS[m.group(1)], template.rstrip("\n"))


def fragments(text: str) -> list[str]:
    """The literal pieces between placeholders, in order (`%%` is a literal percent sign), empty ones dropped.

    These are what a multi-pattern scan (Aho-Corasick) can look for verbatim in a paste; the
    placeholders between them hold the paste's own values."""
    out, last, buf = [], 0, ""
    for m in CONVERSION.finditer(text):
        buf += text[last:m.start()]
        last = m.end()
        if m.group(1) == "%":
            buf += "%"
            continue
        if buf:
            out.append(buf)
        buf = ""
    buf += text[last:]
    if buf:
        out.append(buf)
    return out


def placeholders(text: str) -> int:
    """How many values the template takes (`%%` is not one)."""
    return sum(1 for m in CONVERSION.finditer(text) if m.group(1) != "%")


def literal_words(text: str) -> list[str]:
    """Words (runs of letters) outside the placeholders."""
    return re.findall(r"[^\W\d_]+", " ".join(fragments(text)))


def collapse(text: str) -> str:
    """Whitespace runs as one space, ends stripped: how texts are compared."""
    return _WS.sub(" ", text).strip()


def template_key(template: str) -> str:
    """How an entry's template and a catalog template are compared: every conversion as `%` (entries
    write `%s` where the source has `%zu` or `%m`), whitespace collapsed, case and a final colon,
    space or period dropped."""
    return collapse(CONVERSION.sub("%", template)).rstrip(": .").lower()


def message_id(template: str) -> str:
    """A stable, URL-safe id: a slug of the template's words and a digest of its exact text.

    The digest makes the id depend on this template alone, so adding or removing other messages
    in a rebuild never changes it."""
    words = re.findall(r"[a-z0-9]+", CONVERSION.sub(" ", template.lower()))
    slug = ""
    for w in words:
        if len(slug) + len(w) + 1 > 60:
            break
        slug = f"{slug}-{w}" if slug else w
    digest = hashlib.sha256(template.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else f"m-{digest}"
