"""Counting a log's messages in bounded memory: counts, first and last lines, severities, SQLSTATEs,
one example per message and counts per minute, never the lines themselves.

Two caches keep the cost per line near a dict lookup. The first is keyed by the line's severity and
the start of its message with every digit written as 0 (the scanners cut that key from a copy of the
block translated in one C call), so the same message with other numbers is one lookup. On a miss,
the message is normalised further (quoted values, numbers of any length: `classify.normalise`) and
looked up in the second; only a message not seen before under that key is matched against the
catalog. Both caches are bounded: when the first outgrows its budget its counts are folded into the
groups and it starts again; the number of groups of unrecognised messages is capped, and the output
says so when the cap was reached.

Messages that matter (errors, fatals, panics and warnings, and any message with an entry) are
"rich": each of their lines also updates its group's per-minute counts and SQLSTATEs. The rest
(statement durations, connections) only count.
"""

from __future__ import annotations

from typing import Callable

from kb.triage.classify import Classifier, Identity, normalise
from kb.triage.severity import CONTINUATIONS, ERRORS

# the fields of a first-cache entry (a list, for speed), and what its flag says of its lines
E_COUNT, E_LAST, E_FLAG, E_GROUP, E_SEV = range(5)
PLAIN, CONT, RICH = 0, 1, 2   # only counted; a DETAIL/HINT/... line of the message before; a line that matters
KEY_CHARS_ERROR = 256      # of an error's message, what the first cache keys on
KEY_CHARS_OTHER = 72       # of other messages (a logged statement's text varies after its first words)
KEYS_BUDGET = 32 * 1024 * 1024   # bytes the first cache may hold before it is folded and emptied
NORMAL_MAX = 100_000       # entries of the second cache
UNRECOGNISED_MAX = 500     # groups of unrecognised errors; the rest share one group
MINUTE_CELLS = 500_000     # per-message per-minute counts kept in all
EXAMPLE_LINES = 12
EXAMPLE_CHARS = 2000
CAPTURE_WINDOW = 60        # lines after a message's first line that may hold its DETAIL, HINT ...
UNPARSED_EXAMPLES = 3
CLASSIFY_CHARS = 4096      # of a message, what is matched against the catalog (a statement may run to megabytes)
RICH_LEVELS = ERRORS | {"WARNING"}
# a message below WARNING that has an entry is followed minute by minute for this many lines, then only
# counted: a slow-query log line can be most of a log, and its minutes say little
RICH_OTHER_LINES = 20_000


class Group:
    """One recognised message (or one unrecognised text) and what the log said of it."""

    __slots__ = ("identity", "text", "count", "severities", "first", "last", "sqlstates", "example",
                 "minutes", "active", "last_minute", "langs", "order", "followed", "sampled")

    def __init__(self, identity: Identity | None, text: str, first: str, order: int):
        self.identity = identity
        self.text = text                   # for unrecognised messages, the normalised text
        self.count = 0
        self.severities: dict[str, int] = {}
        self.first = first                 # the first line (raw), its timestamp read when reporting
        self.last = first
        self.sqlstates: dict[str, int] = {}
        self.example: list[str] = []
        self.minutes: dict[str, int] = {}
        self.active = 0                    # minutes it appeared in
        self.last_minute = None
        self.langs: set[str] = set()
        self.order = order                 # creation order: the order of first appearance
        self.followed = 0                  # lines whose minutes were counted
        self.sampled = False               # True once a frequent message stopped being followed


def cut(line: str, n: int = EXAMPLE_CHARS) -> str:
    return line if len(line) <= n else line[:n] + f" … ({len(line) - n:,} more characters)"


class Tally:
    """The running counts of one log."""

    def __init__(self, classifier: Classifier, words: dict[str, str],
                 pid_of: Callable[[str], str | None] = lambda line: None,
                 ts_of: Callable[[str], str | None] = lambda line: None):
        self.classifier = classifier
        self.words = words
        self.pid_of = pid_of
        self.ts_of = ts_of
        # key length by printed severity word; continuations key on their word alone
        self.key_chars = {w: (0 if n in CONTINUATIONS else KEY_CHARS_ERROR if n in RICH_LEVELS else KEY_CHARS_OTHER)
                          for w, n in words.items()}
        self.keys: dict = {}
        self.keys_bytes = 0
        self.normal: dict[str, Group | None] = {}
        self.groups: dict[tuple, Group] = {}
        self.unrecognised: dict[str, Group] = {}
        self.overflow: Group | None = None
        self.capped = False
        self.minute_cells = 0
        self.minutes_capped = False
        self.timeline: dict[str, list[int]] = {}   # minute -> [records, errors, warnings]
        self.other: dict[str, int] = {}            # unrecognised messages below WARNING, by severity
        self.records = 0
        self.continuations = 0
        self.unparsed = 0
        self.unparsed_examples: list[str] = []
        self.capture: list | None = None
        self.created = 0

    # --- the first cache ---------------------------------------------------------------------------
    def new_key(self, key, word: str, message: str, line: str, pid: str | None = None, sqlstate: str | None = None):
        """The first-cache entry for a key not seen yet; `message` is the severity word and the message."""
        level = self.words[word]
        if level in CONTINUATIONS:
            e = [0, None, CONT, None, level]
        else:
            group = self.group_for(level, message, line)
            rich = group is not None and (level in RICH_LEVELS or group.identity is not None
                                          and group.identity.slug is not None)
            e = [0, None, RICH if rich else PLAIN, group, level]
            if group is not None and not group.example:
                group.example.append(cut(line))
                self.capture = [group, pid if pid is not None else self.pid_of(line), CAPTURE_WINDOW, True]
        if self.keys_bytes > KEYS_BUDGET:
            self.fold()
        self.keys[key] = e
        self.keys_bytes += len(key) + 160
        return e

    def group_for(self, level: str, message: str, line: str) -> Group | None:
        """The group of a message (creating it on its first line), None for an unrecognised message below
        WARNING (counted by severity only)."""
        norm = level + "\x00" + normalise(message)
        if norm in self.normal:
            return self.normal[norm]
        identity = self.classifier.identify(message[:CLASSIFY_CHARS])
        group: Group | None
        if identity is not None:
            group = self.groups.get(identity.key)
            if group is None:
                group = self.groups[identity.key] = Group(identity, identity.template, line, self.created)
                self.created += 1
            group.langs.add(identity.lang)
        elif level in RICH_LEVELS:
            text = norm.split("\x00", 1)[1]
            group = self.unrecognised.get(text)
            if group is None:
                if len(self.unrecognised) >= UNRECOGNISED_MAX:
                    self.capped = True
                    if self.overflow is None:
                        self.overflow = Group(None, "(other unrecognised messages: too many kinds to list)", line,
                                              self.created)
                        self.created += 1
                    group = self.overflow
                else:
                    group = self.unrecognised[text] = Group(None, text, line, self.created)
                    self.created += 1
        else:
            group = None
        if len(self.normal) >= NORMAL_MAX:
            self.normal.clear()
        self.normal[norm] = group
        return group

    def fold(self) -> None:
        """Move the first cache's counts into the groups and empty it."""
        for e in self.keys.values():
            n = e[E_COUNT]
            if not n:
                continue
            if e[E_FLAG] == CONT:
                self.continuations += n
                continue
            self.records += n
            g = e[E_GROUP]
            level = e[E_SEV]
            if g is None:
                self.other[level] = self.other.get(level, 0) + n
                continue
            g.count += n
            g.severities[level] = g.severities.get(level, 0) + n
            if e[E_FLAG] != RICH and e[E_LAST] is not None and e[E_LAST] is not g.last:
                a, b = self.ts_of(e[E_LAST]), self.ts_of(g.last)
                if a is not None and (b is None or a > b):
                    g.last = e[E_LAST]
            e[E_COUNT] = 0
        self.keys.clear()
        self.keys_bytes = 0

    # --- rich lines ------------------------------------------------------------------------------
    def rich(self, e: list, line: str, minute: str | None, sqlstate: str | None = None) -> None:
        """A line of a message that matters: its group's last line, minutes and SQLSTATE."""
        g = e[E_GROUP]
        g.last = line
        g.followed += 1
        if g.followed > RICH_OTHER_LINES and e[E_SEV] not in RICH_LEVELS:
            e[E_FLAG] = PLAIN
            g.sampled = True
            return
        if sqlstate:
            g.sqlstates[sqlstate] = g.sqlstates.get(sqlstate, 0) + 1
        if minute is None:
            return
        if minute != g.last_minute:
            g.last_minute = minute
            g.active += 1
        if minute in g.minutes:
            g.minutes[minute] += 1
        elif self.minute_cells < MINUTE_CELLS:
            g.minutes[minute] = 1
            self.minute_cells += 1
        else:
            self.minutes_capped = True
        level = e[E_SEV]
        if level in ERRORS or level == "WARNING":
            row = self.timeline.get(minute)
            if row is None:
                row = self.timeline[minute] = [0, 0, 0]
            row[1 if level in ERRORS else 2] += 1

    def add_minute(self, minute: str, records: int) -> None:
        row = self.timeline.get(minute)
        if row is None:
            self.timeline[minute] = [records, 0, 0]
        else:
            row[0] += records

    # --- examples and lines of no record -----------------------------------------------------------
    def feed(self, line: str, e: list | None) -> list | None:
        """A line after a message whose example is still open: its DETAIL, HINT, CONTEXT, STATEMENT or
        continued text joins the example; the same process's next message closes it."""
        cap = self.capture
        cap[2] -= 1
        if cap[2] <= 0:
            self.capture = None
            return None
        example = cap[0].example
        if e is None:
            if cap[3] and len(example) < EXAMPLE_LINES:
                example.append(cut(line))
            return cap
        pid = self.pid_of(line)
        same = cap[1] is None or pid is None or pid == cap[1]
        if e[E_FLAG] == CONT:
            cap[3] = same
            if same and len(example) < EXAMPLE_LINES:
                example.append(cut(line))
            return cap
        if same:
            self.capture = None
            return None
        cap[3] = False
        return cap

    def unparsed_line(self, line: str) -> None:
        if not line.strip():
            return
        self.unparsed += 1
        if len(self.unparsed_examples) < UNPARSED_EXAMPLES:
            self.unparsed_examples.append(cut(line, 300))

    def all_groups(self) -> list[Group]:
        self.fold()
        out = list(self.groups.values()) + list(self.unrecognised.values())
        if self.overflow is not None:
            out.append(self.overflow)
        return out
