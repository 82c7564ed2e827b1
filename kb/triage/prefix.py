"""PostgreSQL's log_line_prefix (its %-escapes) as a regular expression for the lines it writes, and
the prefixes installations commonly use.

Only what triage needs is captured: the timestamp, the process ID and the SQLSTATE (%e); names such
as %u and %a are skipped with bounded lazy groups (at most 256 characters each, so a hostile line
costs bounded time; role, database and host names hold no space). An escape can be padded (`%-10u`), and `%q` ends the prefix of processes that
are not sessions (the checkpointer prints only what comes before it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TZ = r"(?: [A-Za-z0-9+\-:]{1,8})?"
_TEXT = r".{0,256}?"
_NAME = r"\S{0,256}?"  # a role, database or host name: a name with a space is rare, an app name with one is not
ESCAPES = {
    "t": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d" + _TZ,
    "m": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}" + _TZ,
    "s": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d" + _TZ,
    "n": r"\d{9,11}\.\d{3}",
    "p": r"\d+", "P": r"\d*", "l": r"\d+", "x": r"\d+", "Q": r"-?\d+",
    "c": r"[0-9a-f]+\.[0-9a-f]+", "v": r"[\d/]*", "e": r"[0-9A-Z]{5}",
    "u": _NAME, "d": _NAME, "h": _NAME, "r": _NAME, "L": _NAME, "a": _TEXT, "b": _TEXT, "i": _TEXT,
}
GROUPS = {"t": "ts", "m": "ts", "n": "ts", "p": "pid", "e": "sqlstate"}
_ESCAPE = re.compile(r"%(-?\d+)?(.)")
# a severity word (English or translated) and the colon PostgreSQL puts after it; the one translation of
# two words (Korean's STATEMENT) is spelled out, so that a word before a severity is never read as part of it
SEVERITY = r"(?P<sev>명령 구문|[^\s:\[\]]{2,24}) ?: {1,2}"

# What installations use, most specific first (a Debian line also matches '%m [%p] ', with fewer lines).
KNOWN_PREFIXES = [
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",   # pgBadger's recommendation
    "%m [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: [%l-1] user=%u,db=%d ",
    "%m [%p] %q[user=%u,db=%d,app=%a] ",
    "%m [%p] %q%u@%d/%a ",
    "%m [%p] %u@%d ",                                   # (a Debian log has fewer lines with a user@database)
    "%m [%p] %q%u@%d ",                                 # Debian and Ubuntu
    "%t [%p-%l] %q%u@%d ",                              # Debian and Ubuntu before PostgreSQL 10
    "%m [%p-%l] %q%u@%d ",
    "%t:%r:%u@%d:[%p]:",                                # Amazon RDS and Aurora
    "%m:%r:%u@%d:[%p]:",
    "%t [%p]: [%l-1] ",
    "%t-%c-",                                           # Azure Database for PostgreSQL
    "%m [%p] ",                                         # PostgreSQL's default since 10
    "%t [%p] ",
    "%m ",
    "%t ",
    "",                                                 # PostgreSQL's default before 10
]


class PrefixError(ValueError):
    """A log_line_prefix that cannot be read."""


@dataclass(frozen=True)
class Prefix:
    """A log_line_prefix compiled: the line regex and what the fast path may assume."""

    text: str
    regex: re.Pattern
    ts_slice: tuple[int, int] | None   # where the minute ("YYYY-MM-DD HH:MM") sits, when at a fixed offset
    sep: str | None                    # the literal character just before the severity ('' for no prefix)
    has_sqlstate: bool
    has_pid: bool


def compile_prefix(prefix: str) -> Prefix:
    """The regex for lines written with `prefix` (PostgreSQL's %-escape syntax)."""
    out: list[str] = []
    named: set[str] = set()
    optional = 0
    last = 0
    lead = None  # literal text before the first escape, when that escape is %m or %t
    first_escape = None
    for m in _ESCAPE.finditer(prefix):
        out.append(re.escape(prefix[last:m.start()]))
        pad, code = m.group(1), m.group(2)
        if first_escape is None:
            first_escape = code
            lead = prefix[:m.start()]
        last = m.end()
        if code == "%":
            out.append("%")
            continue
        if code == "q":
            out.append("(?P<q>" if "q" not in named else "(?:")
            named.add("q")
            optional += 1
            continue
        if code not in ESCAPES:
            raise PrefixError(f"log_line_prefix {prefix!r}: %{code} is not an escape PostgreSQL knows")
        body = ESCAPES[code]
        if pad:
            body = rf" *(?:{body}) *"
        name = GROUPS.get(code)
        if name and name not in named:
            named.add(name)
            body = f"(?P<{name}>{body})"
        else:
            body = f"(?:{body})"
        out.append(body)
    out.append(re.escape(prefix[last:]))
    out.append(")?" * optional)
    regex = re.compile("^" + "".join(out) + SEVERITY)
    ts_slice = None
    if first_escape in ("m", "t") and lead is not None and "%" not in lead:
        ts_slice = (len(lead), len(lead) + 16)
    tail = prefix[last:]
    if prefix == "":
        sep = ""
    elif tail and not tail.endswith("%"):
        sep = tail[-1]
    else:
        sep = None
    return Prefix(prefix, regex, ts_slice, sep, "sqlstate" in named, "pid" in named)
