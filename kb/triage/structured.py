"""Scanning csvlog, jsonlog (15+) and PgBouncer logs.

csvlog and jsonlog carry every part of a message in its own field (SQLSTATE, DETAIL, HINT, CONTEXT,
the statement), so a message's example is rebuilt from its first record, in the form a stderr log
prints it. jsonlog lines are keyed without being parsed (the severity and the start of the message
are cut from the line); a record is parsed only when its message is new or matters.
"""

from __future__ import annotations

import csv
import io
import json
import re

from kb.triage.stderr import minute_of
from kb.triage.tally import CONT, RICH, KEY_CHARS_ERROR, Tally, cut

DIGITS = bytes.maketrans(b"0123456789", b"0000000000")

# csvlog's columns (PostgreSQL 13 has the first 24; 14 added leader_pid and query_id)
CSV_TS, CSV_PID, CSV_SEV, CSV_STATE, CSV_MESSAGE = 0, 3, 11, 12, 13
CSV_DETAIL, CSV_HINT, CSV_INTERNAL, CSV_CONTEXT, CSV_QUERY, CSV_LOCATION = 14, 15, 16, 18, 19, 21
CSV_MIN_FIELDS = 22
_CSV_START = re.compile(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
CSV_CARRY_MAX = 8 * 1024 * 1024


def example_lines(ts, pid, sev, message, parts) -> list[str]:
    """A structured record as the lines a stderr log would print for it."""
    head = f"{ts or ''} [{pid or ''}] ".lstrip(" []") if ts or pid else ""
    out = [cut(f"{head}{sev}:  {message}")]
    for label, value in parts:
        if value:
            out.append(cut(f"{label}:  {value}"))
    return out


class CsvScanner:
    """csvlog: records may span lines (a quoted field holds newlines), so a block is cut where the
    last record starts and that record waits for the next block."""

    def __init__(self, tally: Tally):
        self.tally = tally
        self.carry = ""
        tally.ts_of = self.ts_of
        self.broken = 0

    @staticmethod
    def ts_of(line: str) -> str | None:
        return line[:line.index(",")] if "," in line[:40] else None

    def scan(self, text: str, norm: str) -> None:
        text = self.carry + text
        # the last record starts at the last line that starts with a timestamp
        start = None
        last = text.rfind("\n", 0, len(text) - 1)
        while last >= 0:
            if _CSV_START.match(text, last):
                start = last + 1
                break
            last = text.rfind("\n", 0, last)
        if start is None or len(text) - start > CSV_CARRY_MAX:
            self.carry = ""
            self._rows(text)
            return
        self.carry = text[start:]
        self._rows(text[:start])

    def finish(self) -> None:
        if self.carry:
            self._rows(self.carry)
            self.carry = ""

    def _rows(self, text: str) -> None:
        tally = self.tally
        words = tally.words
        key_chars = tally.key_chars
        get = tally.keys.get
        reader = csv.reader(io.StringIO(text))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                self.broken += 1
                tally.unparsed += 1
                continue
            if len(row) < CSV_MIN_FIELDS or row[CSV_SEV] not in words:
                if row:
                    tally.unparsed_line(",".join(row)[:300])
                continue
            word = row[CSV_SEV]
            message = row[CSV_MESSAGE]
            key = (word + ":  " + message[:key_chars[word] or KEY_CHARS_ERROR]).encode().translate(DIGITS)
            e = get(key)
            if e is None:
                e = tally.new_key(key, word, f"{word}:  {message}", self._line(row), row[CSV_PID])
                get = tally.keys.get
                if tally.capture is not None:
                    g = tally.capture[0]
                    g.example[:] = example_lines(row[CSV_TS], row[CSV_PID], word, message, self._parts(row))
                    tally.capture = None
            e[0] += 1
            if e[2] == CONT:
                continue
            ts = row[CSV_TS]
            e[1] = ts + ","
            mn = ts[:16]
            tally.add_minute(mn, 1)
            if e[2] == RICH:
                tally.rich(e, e[1], mn, row[CSV_STATE] or None)

    @staticmethod
    def _line(row: list[str]) -> str:
        return row[CSV_TS] + ","

    @staticmethod
    def _parts(row: list[str]) -> list[tuple[str, str]]:
        def field(i):
            return row[i] if i < len(row) else ""
        return [("DETAIL", field(CSV_DETAIL)), ("HINT", field(CSV_HINT)), ("QUERY", field(CSV_INTERNAL)),
                ("CONTEXT", field(CSV_CONTEXT)), ("STATEMENT", field(CSV_QUERY)), ("LOCATION", field(CSV_LOCATION))]


class JsonScanner:
    """jsonlog: one JSON object a line, with a fixed order of keys (timestamp first)."""

    SEV = '"error_severity":"'
    MSG = '"message":"'

    def __init__(self, tally: Tally):
        self.tally = tally
        tally.ts_of = self.ts_of

    def ts_of(self, line: str) -> str | None:
        if line.startswith('{"timestamp":"'):
            end = line.find('"', 14)
            return line[14:end] if end > 0 else None
        record = self._record(line)
        ts = record.get("timestamp") if record else None
        return ts if isinstance(ts, str) else None

    def scan(self, text: str, norm: str) -> None:
        tally = self.tally
        words = tally.words
        key_chars = tally.key_chars
        get = tally.keys.get
        lines = text.split("\n")
        nlines = norm.split("\n")
        lines.pop()
        nlines.pop()
        SEV, MSG = self.SEV, self.MSG
        for line, nline in zip(lines, nlines):
            s = line.find(SEV)
            k = m = None
            if s >= 0:
                s += len(SEV)
                w_end = line.find('"', s)
                word = line[s:w_end]
                k = key_chars.get(word)
                m = line.find(MSG, w_end)
            if k is None or m is None or m < 0:
                self._slow(line)  # not PostgreSQL's compact form (another program wrote the JSON again)
                continue
            m += len(MSG)
            key = nline[s:w_end] + "\x00" + nline[m:m + k]
            e = get(key)
            if e is None:
                record = self._record(line)
                if record is None:
                    tally.unparsed_line(line)
                    continue
                e = self._new(key, word, record, line)
                get = tally.keys.get
            e[0] += 1
            e[1] = line
            if e[2] == CONT:
                continue
            mn = line[14:30] if line.startswith('{"timestamp":"') else None
            if mn is not None:
                tally.add_minute(mn, 1)
            if e[2] == RICH:
                record = self._record(line) or {}
                tally.rich(e, line, mn, record.get("state_code"))

    def _new(self, key, word: str, record: dict, line: str) -> list:
        tally = self.tally
        message = str(record.get("message", ""))
        e = tally.new_key(key, word, f"{word}:  {message}", line, str(record.get("pid", "")))
        if tally.capture is not None:
            g = tally.capture[0]
            g.example[:] = example_lines(record.get("timestamp"), record.get("pid"), word, message, self._parts(record))
            tally.capture = None
        return e

    def _slow(self, line: str) -> None:
        """A record parsed whole: its keys in another order, or spaces after its colons."""
        tally = self.tally
        record = self._record(line) if line.lstrip().startswith("{") else None
        word = record.get("error_severity") if record is not None else None
        if not isinstance(word, str) or word not in tally.words:
            tally.unparsed_line(line)
            return
        message = str(record.get("message", ""))
        key = (word + "\x00" + message[:tally.key_chars[word]]).encode("utf-8", "replace").translate(DIGITS)
        e = tally.keys.get(key)
        if e is None:
            e = self._new(key, word, record, line)
        e[0] += 1
        e[1] = line
        if e[2] == CONT:
            return
        ts = record.get("timestamp")
        mn = ts[:16] if isinstance(ts, str) and len(ts) >= 16 else None
        if mn is not None:
            tally.add_minute(mn, 1)
        if e[2] == RICH:
            tally.rich(e, line, mn, record.get("state_code"))

    @staticmethod
    def _record(line: str) -> dict | None:
        try:
            record = json.loads(line)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    @staticmethod
    def _parts(r: dict) -> list[tuple[str, str]]:
        return [("DETAIL", r.get("detail")), ("HINT", r.get("hint")), ("QUERY", r.get("internal_query")),
                ("CONTEXT", r.get("context")), ("STATEMENT", r.get("statement"))]


PGBOUNCER_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{3})?(?: [A-Za-z0-9+\-:]{1,8})?) \[(?P<pid>\d+)\] "
    r"(?P<sev>LOG|WARNING|ERROR|FATAL|NOISE|DEBUG|NOTICE) ")
# a client's or server's connection: "C-0x55d3e4a1b2c0: db/user@10.0.0.5:51234 " (the parts are bounded)
PGBOUNCER_CONN = re.compile(r"[CS]-0x[0-9a-f]{1,16}: [^\s/]{0,256}/[^\s@]{0,256}@[^\s]{0,300} ")
PGBOUNCER_WORDS = {"LOG": "LOG", "WARNING": "WARNING", "ERROR": "ERROR", "FATAL": "FATAL", "NOISE": "DEBUG",
                   "DEBUG": "DEBUG", "NOTICE": "NOTICE"}


class PgBouncerScanner:
    """PgBouncer's own log: `<time> [<pid>] <LEVEL> [C-0x..: db/user@addr:port ]<message>`."""

    def __init__(self, tally: Tally):
        self.tally = tally
        tally.ts_of = self.ts_of
        tally.pid_of = lambda line: None

    @staticmethod
    def ts_of(line: str) -> str | None:
        m = PGBOUNCER_LINE.match(line)
        return m.group("ts") if m else None

    def scan(self, text: str, norm: str) -> None:
        tally = self.tally
        key_chars = tally.key_chars
        get = tally.keys.get
        lines = text.split("\n")
        nlines = norm.split("\n")
        lines.pop()
        nlines.pop()
        for line, nline in zip(lines, nlines):
            m = PGBOUNCER_LINE.match(line)
            if m is None:
                tally.unparsed_line(line)
                continue
            word = m.group("sev")
            start = m.end()
            c = PGBOUNCER_CONN.match(line, start) if line.startswith(("C-0x", "S-0x"), start) else None
            body = c.end() if c else start
            key = word + "\x00" + nline[body:body + key_chars[word]]
            e = get(key)
            if e is None:
                e = tally.new_key(key, word, line[body:], line, None)
                get = tally.keys.get
                tally.capture = None  # PgBouncer writes one line per message
            e[0] += 1
            e[1] = line
            mn = minute_of(m.group("ts"))
            if mn is not None:
                tally.add_minute(mn, 1)
            if e[2] == RICH:
                tally.rich(e, line, mn)
