"""Lines wrapped by what carried them: Docker's json-file driver, the CRI format of Kubernetes nodes
(containerd, CRI-O), `kubectl logs --timestamps` / `docker logs -t`, and syslog (rsyslog, journald's
short format, RFC 5424). Each is peeled off a whole block at once, on bytes, before the log's own
format is read; only Docker's JSON needs a parse per line.
"""

from __future__ import annotations

import json
import re
import time

# Linear: each pattern is anchored at a line start and every repetition stops at a space or is bounded.
_CRI = re.compile(rb"(?m)^\d{4}-\d\d-\d\dT[0-9:.]{8,20}(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) ([FP]) ")
_CRI_PARTIAL = re.compile(rb"(?m)^\d{4}-\d\d-\d\dT[0-9:.]{8,20}(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) P ([^\n]*)\n")
_CRI_FULL = re.compile(rb"(?m)(?:^|(?<=\x00))\d{4}-\d\d-\d\dT[0-9:.]{8,20}(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) F ")
_STAMPED = re.compile(rb"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d) ")
# syslog's time and the process ID are named, for a prefix that has no time of its own
_SYSLOG = re.compile(rb"(?m)^(?:<\d{1,3}>)?(?P<t>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[0-9:.+\-Z]{8,32}) "
                          rb"[^\s\[]{1,255} [\w./-]{1,64}\[(?P<pid>\d{1,10})\]: (?:\[\d{1,20}-\d{1,10}\] )?")
_SYSLOG_5424 = re.compile(rb"(?m)^<\d{1,3}>1 (?P<t>\S{1,64}) [^\s]{1,255} [^\s]{1,48} (?P<pid>\d{1,10}) \S{1,32} "
                               rb"(?:-|\[[^\]\n]{0,1000}\]) (?:\xef\xbb\xbf)?(?:\[\d{1,20}-\d{1,10}\] )?")
_MONTHS = {m.encode(): i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


class Wrapper:
    """One way of wrapping log lines; `unwrap` turns a block of wrapped lines into the log's own."""

    name = ""

    def matches(self, line: bytes) -> bool:
        raise NotImplementedError

    def unwrap(self, block: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""


class DockerJson(Wrapper):
    """Docker's json-file logging driver: {"log":"<line>\\n","stream":"stderr","time":"..."}."""

    name = "Docker json-file"

    def matches(self, line: bytes) -> bool:
        return line.startswith(b'{"log":"') or (line.startswith(b"{") and b'"log":' in line[:4096]
                                                  and b'"stream":' in line)

    def unwrap(self, block: bytes) -> bytes:
        out = []
        for line in block.split(b"\n"):
            if not line:
                continue
            try:
                record = json.loads(line)
                text = record["log"]
            except (ValueError, KeyError, TypeError):
                out.append(line + b"\n")  # not wrapped: kept as it is
                continue
            if isinstance(text, str):
                out.append(text.encode("utf-8", "surrogatepass"))
        return b"".join(out)  # a line longer than 16 KB comes in pieces without "\n": they join here


class Cri(Wrapper):
    """The CRI log format (/var/log/pods on Kubernetes nodes): `<time> <stream> <F|P> <line>`."""

    name = "Kubernetes (CRI)"

    def __init__(self):
        self.carry = b""

    def matches(self, line: bytes) -> bool:
        return _CRI.match(line) is not None

    def unwrap(self, block: bytes) -> bytes:
        # a partial line (P) continues in the next record: join them, then drop every header
        text = _CRI_FULL.sub(b"", _CRI_PARTIAL.sub(rb"\1" + b"\x00", self.carry + block)).replace(b"\x00", b"")
        self.carry = b""
        if not text.endswith(b"\n"):
            cut = text.rfind(b"\n") + 1
            text, self.carry = text[:cut], text[cut:]
        return text

    def finish(self) -> bytes:
        rest, self.carry = self.carry, b""
        return rest + b"\n" if rest else b""


class Stamped(Wrapper):
    """`kubectl logs --timestamps` and `docker logs -t`: an RFC 3339 time before each line."""

    name = "timestamps (kubectl logs --timestamps, docker logs -t)"

    def matches(self, line: bytes) -> bool:
        return _STAMPED.match(line) is not None and not _CRI.match(line)

    def unwrap(self, block: bytes) -> bytes:
        return _STAMPED.sub(b"", block)


class Syslog(Wrapper):
    """syslog (rsyslog, journalctl's short output, RFC 5424): `<time> <host> postgres[<pid>]: [<n>-<m>] ...`.

    rsyslog writes PostgreSQL's tab before continued text as #011. When the server's own prefix has no
    time (log_line_prefix = 'user=%u,db=%d ' is usual with syslog), `keep_time` writes syslog's time and
    process ID in front of each line instead ("2026-12-07 02:40:39 [3122] "; RFC 3164 times have no
    year: the current one is assumed)."""

    name = "syslog"

    def __init__(self):
        self.keep_time = False
        self.year = time.gmtime().tm_year

    def matches(self, line: bytes) -> bool:
        return _SYSLOG.match(line) is not None or _SYSLOG_5424.match(line) is not None

    def _stamp(self, m: re.Match) -> bytes:
        t, pid = m.group("t"), m.group("pid")
        if t[:1].isdigit():  # RFC 3339
            stamp = t[:19].replace(b"T", b" ")
        else:
            month = _MONTHS.get(t[:3], 1)
            stamp = b"%d-%02d-%02d %s" % (self.year, month, int(t[4:6]), t[7:15])
        return stamp + b" [" + pid + b"] "

    def unwrap(self, block: bytes) -> bytes:
        if self.keep_time:
            block = _SYSLOG_5424.sub(self._stamp, _SYSLOG.sub(self._stamp, block))
        else:
            block = _SYSLOG_5424.sub(b"", _SYSLOG.sub(b"", block))
        return block.replace(b"#011", b"\t") if b"#011" in block else block


WRAPPERS = (DockerJson, Cri, Stamped, Syslog)


def detect_wrapper(lines: list[bytes]) -> Wrapper | None:
    """The wrapper most of the sample's lines have, if any."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return None
    for kind in WRAPPERS:
        w = kind()
        if sum(1 for line in lines if w.matches(line)) >= 0.5 * len(lines):
            return w
    return None
