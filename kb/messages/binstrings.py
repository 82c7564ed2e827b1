"""Which templates a compiled PostgreSQL binary contains, read from its string table.

A message template is a C string literal passed to `errmsg()`, `errdetail()`, `libpq_gettext()`
and friends, so it sits in the binary's read-only data as a NUL-terminated string. A template
counts as present in a binary when
  1. exactly that string is there, or
  2. a string of the same shape is there (integer conversions compared as one class, because
     the same message reads `%lld` in 15's translations and `%ld` in 18's binary), or
  3. it is the tail of a longer string (the linker merges a string into another that ends with it).
What this can miss: a template assembled by the preprocessor from several literals in a way that
differs between majors, or one compiled only on other platforms (Windows). What it cannot tell:
the message's SQLSTATE or whether it is a detail or a hint (that call is compiled away).

`message_like()` picks, from the strings that are no known template, those shaped like messages
(see its docstring): internal errors raised with `elog()` (never translated, e.g. `cache lookup
failed for relation %u`) and templates new in 16-18, which no translation this machine has
covers. Its precision is lower: a label that reads like a phrase (`time with time zone`) passes.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from kb.messages.formats import shape

MIN_LEN = 4


def strings(path: Path) -> set[str]:
    """Every NUL-terminated run of at least MIN_LEN bytes that is valid UTF-8 with no control
    character other than newline and tab."""
    out = set()
    for chunk in Path(path).read_bytes().split(b"\0"):
        if len(chunk) < MIN_LEN:
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.isprintable() or all(c.isprintable() or c in "\n\t" for c in text):
            out.add(text)
    return out


class StringTable:
    """The strings of one binary, indexed for the three ways a template can be present."""

    TAIL = 12

    def __init__(self, path: Path):
        self.strings = strings(path)
        self.shapes = {shape(s) for s in self.strings if "%" in s} | {s.rstrip("\n") for s in self.strings}
        self.tails: dict[str, list[str]] = {}
        for s in self.strings:
            if len(s) > self.TAIL:
                self.tails.setdefault(s[-self.TAIL:], []).append(s)

    def has(self, template: str) -> bool:
        """Whether the template is present (exactly, by shape, or as the tail of a longer string)."""
        if template in self.strings or shape(template) in self.shapes:
            return True
        if len(template) >= self.TAIL:
            return any(s.endswith(template) for s in self.tails.get(template[-self.TAIL:], ()))
        return False


_PRIMARY = re.compile(r"^[a-z\"%][\x20-\x7e]*$")
_SENTENCE = re.compile(r"^[A-Z][a-z]+,? [\x20-\x7e]*[a-z0-9)\"]\.$")
_NOT_A_MESSAGE = re.compile(r"  |\t|;|::|[{}\\]|^\S+$|\b(?:SELECT|FROM|WHERE|JOIN)\b|[a-z]\(\)$|^%s$|\.[a-z]{1,4}$|/\S+/")
_WORD3 = re.compile(r"\b[a-z]{3,}\b")
_CAPITALISED = re.compile(r"^[A-Z][a-z]+ [\x20-\x7e]*%[sdu][\x20-\x7e]*$")


def message_like(text: str, component: str) -> str | None:
    """'primary', 'sentence' or 'capitalised' when `text` is shaped like a message of `component`, else None.

    Primary: printable ASCII starting lower-case (or with a quote or placeholder), two or more
    lower-case words of 3+ letters, no final period. Sentence: a capitalised word, four or more
    words, a final period. Capitalised: a capitalised word, four or more words, a printf conversion.
    All: no double spaces, tabs, semicolons, braces, backslashes, SQL
    keywords, paths or file suffixes. libpq ends every message with a newline, so a libpq string
    without one is not taken."""
    if component == "libpq":
        if not text.endswith("\n") or text.count("\n") != 1:
            return None
        text = text[:-1]
    elif "\n" in text:
        return None
    if len(text) < 12 or len(text) > 300 or _NOT_A_MESSAGE.search(text):
        return None
    if _PRIMARY.match(text) and not text.endswith(".") and len(_WORD3.findall(text)) >= 2:
        return "primary"
    if _SENTENCE.match(text) and len(text.split()) >= 4:
        return "sentence"
    if _CAPITALISED.match(text) and len(text.split()) >= 4:
        return "capitalised"  # a DETAIL that takes values, new in 16-18 (Connection matched file "%s" line %d: ...)
    return None


def describe_config(postgres: Path) -> list[tuple[str, str, str]]:
    """(setting name, short description, extra description) of every setting, from
    `postgres --describe-config`: the server's own GUC table, in English (LC_ALL=C)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LC_ALL"] = "C"
    out = subprocess.run([str(postgres), "--describe-config"], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout
    rows = []
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) >= 9:
            rows.append((cols[0], cols[7], cols[8]))
            rows.append((cols[0], cols[2], ""))  # the group, e.g. "Connections and Authentication / Connection Settings"
    return rows
