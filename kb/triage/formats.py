"""Telling a log's format from its first lines: stderr with any of the common log_line_prefix values
(or the one given), csvlog, jsonlog, PgBouncer's log, or a stderr log whose prefix is unknown but
whose severity words can still be found; and saying which were tried when none fits.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from kb.triage.errors import TriageError
from kb.triage.prefix import KNOWN_PREFIXES, SEVERITY, Prefix, PrefixError, compile_prefix
from kb.triage.structured import CSV_MIN_FIELDS, CSV_SEV, PGBOUNCER_LINE

FORMAT_NAMES = ("stderr", "csvlog", "jsonlog", "pgbouncer")
MIN_SHARE = 0.2   # of a sample's lines, the share a format must read to be taken

_TS_AT_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")


@dataclass
class Detected:
    """The format a log was read as."""

    format: str                   # stderr, csvlog, jsonlog or pgbouncer
    prefix: Prefix | None = None  # for stderr
    generic: bool = False         # stderr whose prefix is none of the known ones

    @property
    def description(self) -> str:
        if self.format != "stderr":
            return {"csvlog": "csvlog", "jsonlog": "jsonlog", "pgbouncer": "PgBouncer log"}[self.format]
        if self.generic:
            return "stderr (log_line_prefix not recognised: severities found by their words)"
        return f"stderr, log_line_prefix '{self.prefix.text}'"


def generic_prefix(sample: list[str]) -> Prefix:
    """A Prefix for lines whose prefix is unknown: severities are found by their words, the minute from a
    timestamp that opens the line."""
    starts = sum(1 for line in sample if _TS_AT_START.match(line))
    ts_slice = (0, 16) if starts >= 0.5 * max(1, len(sample)) else None
    # a timestamp that opens the line, then a severity word and its colon within the first 300 characters
    # (a bounded lazy scan)
    regex = re.compile(r"^(?:(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [A-Za-z0-9+\-:]{1,8})?)(?=[\s\]:>\-\[]))?"
                       r"(?P<pre>.{0,300}?)(?:(?<=[\s\]:>\-])|^)" + SEVERITY)
    return Prefix("", regex, ts_slice, " ", False, False)


def _count_stderr(prefix: Prefix, lines: list[str], words: dict) -> float:
    """Lines the prefix reads; a prefix whose %q part never matched counts a little less, so that a log
    written with '%m [%p] ' is not reported as written with '%m [%p] %q%u@%d '."""
    n = optional = 0
    has_q = "q" in prefix.regex.groupindex
    for line in lines:
        m = prefix.regex.match(line)
        if m is not None and m.group("sev") in words:
            n += 1
            if has_q and m.group("q") is not None:
                optional += 1
    return n - 0.5 if has_q and n and not optional else n


def _count_csv(lines: list[str], words: dict) -> int:
    n = 0
    try:
        for row in csv.reader(io.StringIO("\n".join(lines))):
            if len(row) >= CSV_MIN_FIELDS and row[CSV_SEV] in words and _TS_AT_START.match(row[0]):
                n += 1
    except csv.Error:
        pass
    return n


def _count_json(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("{") and '"error_severity":' in line and '"message":' in line)


def _count_pgbouncer(lines: list[str]) -> int:
    return sum(1 for line in lines if PGBOUNCER_LINE.match(line))


def tried(prefix: str | None = None) -> list[str]:
    """The formats detection tries, as words."""
    prefixes = [prefix] if prefix is not None else KNOWN_PREFIXES
    return ([f"stderr with log_line_prefix '{p}'" for p in prefixes]
            + ["stderr with any other prefix (severity words such as ERROR: or FEHLER:)",
               "csvlog", "jsonlog", "PgBouncer's log",
               "each of these wrapped by Docker (json-file), Kubernetes (CRI, kubectl logs --timestamps) or syslog"])


def detect(lines: list[str], words: dict, prefix: str | None = None,
           fmt: str | None = None) -> Detected:
    """The format that reads the most of the sample's lines; TriageError naming what was tried when none reads
    enough of them."""
    if fmt is not None and fmt not in FORMAT_NAMES:
        raise TriageError(f"unknown format {fmt!r}: use one of {', '.join(FORMAT_NAMES)}", status=400, field="format")
    if prefix is not None and fmt not in (None, "stderr"):
        raise TriageError(f"a log_line_prefix applies to stderr logs, not to {fmt}", status=400, field="prefix")
    if prefix is not None:
        try:
            compiled = compile_prefix(prefix)
        except PrefixError as exc:
            raise TriageError(str(exc), status=400, field="prefix") from None
    body = [line for line in lines if line.strip() and not line.startswith("\t")]
    if not body:
        raise TriageError("the log holds no lines of text", field="body")
    scores: list[tuple[float, int, Detected]] = []
    order = 0

    def consider(n: float, d: Detected):
        nonlocal order
        scores.append((n, -order, d))
        order += 1

    if fmt in (None, "jsonlog") and prefix is None:
        consider(_count_json(body), Detected("jsonlog"))
    if fmt in (None, "csvlog") and prefix is None:
        consider(_count_csv(body, words), Detected("csvlog"))
    if fmt in (None, "pgbouncer") and prefix is None:
        consider(_count_pgbouncer(body), Detected("pgbouncer"))
    if fmt in (None, "stderr"):
        if prefix is not None:
            consider(_count_stderr(compiled, body, words), Detected("stderr", compiled))
        else:
            for p in KNOWN_PREFIXES:
                c = compile_prefix(p)
                consider(_count_stderr(c, body, words), Detected("stderr", c))
            g = generic_prefix(body)
            consider(_count_stderr(g, body, words) // 2, Detected("stderr", g, generic=True))  # only when nothing else
    best = max(scores, key=lambda s: (s[0], s[1]))
    if best[0] == 0 or best[0] < MIN_SHARE * len(body):
        first = body[0][:200]
        if prefix is not None:
            error = (f"no line of the log was written with log_line_prefix {prefix!r} (the first line is {first!r}); "
                     "check it with SHOW log_line_prefix")
        else:
            error = ("no log format recognised in the log's first lines; tried: " + "; ".join(tried(prefix))
                     + ". If the server writes stderr with another log_line_prefix, pass it (kb triage --prefix '...', "
                     "or ?prefix= on the API)")
        raise TriageError(error, errors=[{"field": "format", "reason": t} for t in tried(prefix)]
                          + [{"field": "body", "reason": f"first line: {first!r}"}])
    return best[2]
