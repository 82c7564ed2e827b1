"""Normalises error text so pastes and message templates meet: variable parts become placeholders.

A paste is untrusted, so every pattern applied to it must take time linear in its length. A pattern
that can rescan a long run from many starting points (hostnames and URLs, whose parts repeat without
bound: "a." repeated 16,000 times took seconds) runs on RE2, a linear-time engine. The others stay on
Python's `re`, which is faster per match, because each is linear there: every repetition is bounded
or stops at a character the pattern cannot cross, and each can only start where a scan from an
earlier start could not already have failed (the reason is noted beside each). The property test
in tests/test_search.py holds all of them to a time bound on hostile 32 KB inputs.
"""

from __future__ import annotations

import functools
import re

import re2

# Placeholders in normalised text; short words no message uses.
QUOTED, NUMBER, HOST, VAR = "qv", "nv", "hv", "%v"

# A printf variable, with its quotes, and with a unit glued to a number ("%dms", "%dkB"), since pastes
# normalise "30000ms" to one number token.
_TEMPLATE_VAR = re.compile(
    r"""["'`«]?%(?:\d+\$)?[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L)?[sdufgxXcmpi](?:(?<=[dufgi])(?:ms|s|kb|mb|gb)\b)?["'`»]?""",
    re.I)
# bounded repetitions only
_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)?(?:\s?(?:Z|UTC|GMT|[A-Z]{3,4}|[+-]\d{2}:?\d{2}))?\b"
    r"|\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
)
# Only word-like quoted text is a variable part ("users_pkey", 'abc'); a quoted sentence, such as a
# message inside a JSON string, keeps its words. A scan stops at the next quote, within 80 characters.
# («...» stops at the next « too: its opening and closing marks differ, so a run of « would otherwise
# be rescanned from each one.)
_QUOTED = re.compile(r'\\?"[^"\s\\]{0,80}\\?"|\'[^\'\s]{0,80}\'|`[^`\s]{0,80}`|«[^«»\s]{0,80}»')
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")  # bounded
_IPV6 = re.compile(r"\[?\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b\]?", re.I)  # bounded, each group ends at its colon
_HOSTNAME = re2.compile(r"(?i)\b(?:[a-z0-9-]+\.){2,}[a-z]{2,}(?::\d+)?\b")  # unbounded across dots: RE2
_URL = re2.compile(r"(?i)\b[a-z][a-z0-9+.-]*://\S+")  # unbounded across dots: RE2
# starts only at a word's start and stops at its end
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b[0-9a-f]{8,}\b", re.I)
# A number not glued to a letter or digit before it ("v2", "utf8" stay words), so it starts only at the
# start of a run of digits.
_NUMBER = re.compile(r"(?<![a-z0-9])\d+(?:\.\d+)?(?:ms|s|kb|mb|gb)?\b", re.I)
_WORD = re.compile(r"[a-z_%][a-z0-9_]*", re.I)  # one pass, no backtracking
# SQLSTATE candidates: five letters or digits with neither around them; each start is checked once.
SQLSTATE_RE = re.compile(r"(?<![0-9A-Za-z])([0-9A-Z]{5})(?![0-9A-Za-z])")


def _tokens(text: str) -> list[str]:
    # each pass only where the text holds a character its every match needs (a substring test costs
    # microseconds, a pass over 32 KB milliseconds)
    if "://" in text:
        text = _URL.sub(f" {HOST} ", text)
    if ":" in text or "-" in text:
        text = _TIMESTAMP.sub(" ", text)
    if any(q in text for q in "\"'`«"):
        text = _QUOTED.sub(f" {QUOTED} ", text)
    dot, colon = "." in text, ":" in text
    if dot:
        text = _IPV4.sub(f" {HOST} ", text)
    if colon:
        text = _IPV6.sub(lambda m: f" {HOST} " if m.group(0).count(":") >= 2 else m.group(0), text)
    if dot:
        text = _HOSTNAME.sub(f" {HOST} ", text)
    text = _HEX.sub(f" {NUMBER} ", text)
    text = _NUMBER.sub(f" {NUMBER} ", text)
    words = _WORD.findall(text)
    # lowercased at once (the same as word by word: no word holds a space, and none a letter whose
    # lowercase depends on its neighbours)
    return " ".join(words).lower().split(" ") if words else []


def normalize_text(text: str) -> list[str]:
    """Tokens of pasted text with timestamps dropped and quoted/numeric/host parts as placeholders."""
    return list(_normalized(text))


@functools.lru_cache(maxsize=4)
def _normalized(text: str) -> tuple[str, ...]:
    # a search normalises its paste twice (the entries' templates, then the words): the last few are kept
    return tuple(filter(VAR.__ne__, _tokens(text)))


def template_tokens(template: str) -> list[str]:
    """Tokens of a message template; printf variables (with their quotes) become `%v`."""
    return _tokens(_TEMPLATE_VAR.sub(f" {VAR} ", template))


def template_regex(tokens: list[str]):
    """An RE2 pattern over space-joined normalised paste tokens matching the template's tokens in order."""
    while tokens and tokens[0] == VAR:
        tokens = tokens[1:]
    while tokens and tokens[-1] == VAR:
        tokens = tokens[:-1]
    if not tokens:
        return None
    parts = []
    for tok in tokens:
        if tok == VAR:
            parts.append(r"(?:\S+ ){0,6}?")
        elif tok in (QUOTED, NUMBER, HOST):
            # a template's literal number or quoted text may appear as any variable part
            parts.append(r"(?:\S+ ){1,6}?")
        else:
            parts.append(re2.escape(tok) + " ")
    return re2.compile(r"(?:^| )" + "".join(parts))


def sqlstates_in(text: str) -> list[str]:
    """Candidate SQLSTATE codes (5 characters, uppercase letters and digits, at least one digit)."""
    return [c for c in dict.fromkeys(SQLSTATE_RE.findall(text)) if any(ch.isdigit() for ch in c)]
