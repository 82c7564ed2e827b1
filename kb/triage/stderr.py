"""Scanning stderr logs (any log_line_prefix): the loop every line of a plain server log goes through.

The fast path reads a line with two C-level string searches: the first ":  " (a severity word is
always followed by a colon and two spaces) and the prefix's last literal character before it, which
gives the severity word; the minute is a fixed slice when the prefix starts with %m or %t. A line the
fast path cannot read (an unusual prefix, a severity word with a space) goes through the prefix's
regular expression; continued text (PostgreSQL indents it with a tab) joins an open example only.
"""

from __future__ import annotations

import re

from kb.triage.prefix import Prefix
from kb.triage.tally import CONT, RICH, Tally

_ISO_MINUTE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
_PID = re.compile(r"\[(\d{1,10})\]")


def minute_of(ts: str | None) -> str | None:
    """The minute ("YYYY-MM-DD HH:MM") of a timestamp as %m, %t or %n print it."""
    if not ts:
        return None
    if _ISO_MINUTE.match(ts):
        return ts[:16]
    try:
        import time

        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(ts)))
    except (ValueError, OverflowError):
        return None


class StderrScanner:
    """Reads blocks of a stderr log written with one log_line_prefix."""

    def __init__(self, prefix: Prefix, tally: Tally):
        self.prefix = prefix
        self.tally = tally
        self.regex = prefix.regex
        self.fast = prefix.sep is not None and (prefix.ts_slice is not None or "ts" not in prefix.regex.groupindex)
        tally.pid_of = self.pid_of
        tally.ts_of = self.ts_of

    def pid_of(self, line: str) -> str | None:
        m = self.regex.match(line)
        if m is None:
            return None
        if self.prefix.has_pid:
            return m.group("pid")
        pid = _PID.search(line, 0, m.start("sev"))  # a prefix not known: the first [digits] before the severity
        return pid.group(1) if pid else None

    def ts_of(self, line: str) -> str | None:
        m = self.regex.match(line)
        return m.group("ts") if m is not None and "ts" in self.regex.groupindex else None

    def scan(self, text: str, norm: str) -> None:
        """Count the lines of one block (`norm` is the block with every digit written as 0)."""
        lines = text.split("\n")
        nlines = norm.split("\n")
        lines.pop()
        nlines.pop()
        if self.fast and self.prefix.ts_slice is not None and self.prefix.sep:
            self._scan_fast(lines, nlines)
        else:
            self._scan(lines, nlines)

    def _scan_fast(self, lines: list[str], nlines: list[str]) -> None:
        """The loop for a prefix that opens with %m or %t and ends with a literal: most lines cost two string
        searches, three slices and two dict lookups. (The per-line steps are written out, not called.)"""
        tally = self.tally
        get = tally.keys.get
        key_chars = tally.key_chars
        sep = self.prefix.sep
        a, b = self.prefix.ts_slice
        sqlstates = self.prefix.has_sqlstate
        capture = tally.capture
        minute = None
        in_minute = 0
        for line, nline in zip(lines, nlines):
            i = line.find(":  ")
            if i > 0:
                j = line.rfind(sep, 0, i) + 1
                k = key_chars.get(line[j:i])
                if k is not None:
                    e = get(nline[j:i + 3 + k])
                    opened = False
                    if e is None:
                        e = tally.new_key(nline[j:i + 3 + k], line[j:i], line[j:], line)
                        get = tally.keys.get
                        if tally.capture is not capture:
                            capture, opened = tally.capture, True
                    e[0] += 1
                    e[1] = line
                    flag = e[2]
                    if flag == CONT:
                        if capture is not None:
                            capture = tally.feed(line, e)
                        continue
                    mn = line[a:b]
                    if mn != minute:
                        if minute is not None:
                            tally.add_minute(minute, in_minute)
                        minute, in_minute = mn, 0
                    in_minute += 1
                    if flag:
                        tally.rich(e, line, mn, self._sqlstate(line) if sqlstates else None)
                    if capture is not None and not opened:
                        capture = tally.feed(line, e)
                    continue
            if line[:1] == "\t":  # text continued from the line before
                tally.continuations += 1
                if capture is not None:
                    capture = tally.feed(line, None)
                continue
            if minute is not None:  # the general loop keeps its own minute
                tally.add_minute(minute, in_minute)
                minute, in_minute = None, 0
            tally.capture = capture
            self._scan([line], [nline])
            capture = tally.capture
        tally.capture = capture
        if minute is not None:
            tally.add_minute(minute, in_minute)

    def _scan(self, lines: list[str], nlines: list[str]) -> None:
        """The loop for any prefix: the fast path where it applies, the prefix's regex where not."""
        tally = self.tally
        get = tally.keys.get
        key_chars = tally.key_chars
        words = tally.words
        sep = self.prefix.sep
        a, b = self.prefix.ts_slice or (0, 0)
        has_ts = self.prefix.ts_slice is not None
        sqlstates = self.prefix.has_sqlstate
        fast = self.fast
        regex = self.regex
        capture = tally.capture
        opened = False
        minute = None
        in_minute = 0
        for line, nline in zip(lines, nlines):
            e = None
            if fast:
                i = line.find(":  ")
                if i > 0 or (i == 0 and sep == ""):
                    j = line.rfind(sep, 0, i) + 1 if sep else 0
                    k = key_chars.get(line[j:i])
                    if k is not None:
                        key = nline[j:i + 3 + k]
                        e = get(key)
                        if e is None:
                            e = tally.new_key(key, line[j:i], line[j:], line)
                            get = tally.keys.get
                            if tally.capture is not capture:
                                capture, opened = tally.capture, True
                        mn = line[a:b] if has_ts else None
            if e is None:
                if line[:1] == "\t":
                    tally.continuations += 1
                    if capture is not None:
                        capture = tally.feed(line, None)
                    continue
                m = regex.match(line)
                if m is None or m.group("sev") not in words:
                    tally.unparsed_line(line)
                    continue
                word = m.group("sev")
                s, end = m.start("sev"), m.end()
                key = nline[s:end + key_chars[word]]
                e = get(key)
                if e is None:
                    e = tally.new_key(key, word, line[s:], line, m.groupdict().get("pid"))
                    get = tally.keys.get
                    if tally.capture is not capture:
                        capture, opened = tally.capture, True
                mn = line[a:b] if has_ts else minute_of(m.groupdict().get("ts"))
            e[0] += 1
            e[1] = line
            if e[2] == CONT:
                if capture is not None:
                    capture = tally.feed(line, e)
                continue
            if mn is not None:
                if mn != minute:
                    if minute is not None:
                        tally.add_minute(minute, in_minute)
                    minute, in_minute = mn, 0
                in_minute += 1
            if e[2] == RICH:
                tally.rich(e, line, mn, self._sqlstate(line) if sqlstates else None)
            if capture is not None:
                if opened:
                    opened = False
                else:
                    capture = tally.feed(line, e)
        tally.capture = capture
        if minute is not None:
            tally.add_minute(minute, in_minute)

    def _sqlstate(self, line: str) -> str | None:
        m = self.regex.match(line)
        return m.group("sqlstate") if m is not None else None
