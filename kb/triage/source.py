"""Reading a log as a stream of whole-line blocks: plain text or gzip (told by its magic bytes), with
NUL runs dropped, over-long lines cut, and what was not text said at once.

Memory stays bounded whatever the input: compressed input is read in pieces, decompressed at most
one block at a time, and only the unfinished last line of a block is carried to the next.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Callable, Iterator

from kb.triage.errors import TriageError

READ = 256 * 1024          # compressed bytes read at a time
BLOCK = 1024 * 1024        # decompressed bytes handed on at a time (whole lines)
LINE_MAX = 1024 * 1024     # a longer line is cut to this and counted; its rest is skipped
SAMPLE = 64 * 1024         # what is looked at to tell text from binary data

# Formats kb does not read, by their first bytes, with the command that turns them into text.
_OTHER_MAGIC = [
    (b"\xfd7zXZ\x00", "xz-compressed", "xz -dc FILE | kb triage -"),
    (b"BZh", "bzip2-compressed", "bzip2 -dc FILE | kb triage -"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "zstd -dc FILE | kb triage -"),
    (b"PK\x03\x04", "a zip archive", "unzip -p FILE | kb triage -"),
    (b"PGDMP", "a pg_dump custom-format archive, not a log", None),
    (b"\x7fELF", "an executable (ELF), not a log", None),
    (b"%PDF", "a PDF document, not a log", None),
    (b"\x89PNG", "a PNG image, not a log", None),
    (b"SQLite format 3\x00", "an SQLite database, not a log", None),
]
_TEXT_CONTROLS = set(b"\t\n\r\x0b\x0c\x1b")


def binary_reason(sample: bytes) -> str | None:
    """Why `sample` (the first decompressed bytes) is not a text log, or None when it is text."""
    for magic, what, how in _OTHER_MAGIC:
        if sample.startswith(magic):
            return f"the input is {what}" + (f"; decompress it first: {how}" if how else "")
    body = sample.replace(b"\x00" * 64, b"")  # runs of NULs: a file truncated while written (copytruncate)
    body = body.lstrip(b"\x00")
    if b"\x00" in body:
        return "the input is binary data (it holds NUL bytes between its characters), not a text log"
    if not body:
        return None
    controls = sum(1 for b in body if b < 0x20 and b not in _TEXT_CONTROLS)
    if controls > len(body) * 0.05:
        return f"the input is binary data ({controls} control bytes in its first {len(body)}), not a text log"
    return None


class LogSource:
    """The lines of a plain or gzip log, as blocks of bytes that end with a newline."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], None] | None = None,
                 max_bytes: int | None = None):
        self.raw = raw
        self.progress = progress
        self.max_bytes = max_bytes      # decompressed bytes beyond which reading stops (TriageError)
        self.compression: str | None = None
        self.bytes_in = 0               # bytes read from the input (compressed when gzip)
        self.bytes = 0                  # bytes of log text
        self.truncated: str | None = None  # why a gzip stream ended early
        self.cut_lines = 0
        self.cut_bytes = 0              # bytes of cut lines that were skipped
        self.nul_bytes = 0
        self.encoding = "utf-8"

    def _read(self, size: int = READ) -> bytes:
        data = self.raw.read(size)
        if data:
            self.bytes_in += len(data)
            if self.progress:
                self.progress(self.bytes_in)
        return data

    def _decompressed(self) -> Iterator[bytes]:
        """Raw text bytes in pieces of at most BLOCK, gunzipped when the input is gzip."""
        head = self._read()
        while head and len(head) < 2:
            more = self._read()
            if not more:
                break
            head += more
        if head[:2] != b"\x1f\x8b":
            data = head
            while data:
                yield data
                data = self._read(BLOCK)
            return
        self.compression = "gzip"
        d = zlib.decompressobj(wbits=31)
        pending = head
        while True:
            if not pending:
                pending = self._read()
                if not pending:
                    break
            try:
                out = d.decompress(pending, BLOCK)
            except zlib.error as exc:
                self.truncated = f"the gzip data is damaged after {self.bytes_in:,} bytes of input ({exc})"
                return
            pending = d.unconsumed_tail
            if out:
                yield out
            if d.eof:
                rest = d.unused_data.lstrip(b"\x00")  # gzip members may follow each other (or padding)
                if not rest:
                    rest = self._read()
                    while rest and not rest.strip(b"\x00"):
                        rest = self._read()
                    rest = rest.lstrip(b"\x00")
                    if not rest:
                        return
                if rest[:2] != b"\x1f\x8b" and len(rest) >= 2:
                    self.truncated = f"{self.bytes_in:,} bytes of input: data after the gzip stream is not gzip"
                    return
                d = zlib.decompressobj(wbits=31)
                pending = rest
        tail = d.flush()
        if tail:
            yield tail
        if not d.eof:
            self.truncated = (f"the gzip stream ends early, after {self.bytes_in:,} bytes of input "
                              f"({self.bytes:,} bytes of log were read before the cut)")

    def blocks(self) -> Iterator[bytes]:
        """Blocks of whole lines (each ends with b"\\n"); the first is checked for binary data."""
        carry = b""
        skipping = False  # inside a line that was cut: drop bytes until its newline
        first = True
        sample = b""
        for piece in self._decompressed():
            if first:
                sample += piece[:SAMPLE - len(sample)]
                if len(sample) < SAMPLE and len(sample) < 4096:
                    # too little to judge yet (a pipe gives small reads): keep collecting
                    carry += piece
                    continue
                first = False
                reason = binary_reason(sample)
                if reason:
                    raise TriageError(reason, field="body")
                piece, carry = carry + piece, b""
            if self.max_bytes is not None and self.bytes + len(piece) > self.max_bytes:
                raise TriageError(f"the log is more than {self.max_bytes:,} bytes once decompressed, the most "
                                  "kb reads from one upload", status=413, field="body")
            self.bytes += len(piece)
            if b"\x00" in piece:
                n = len(piece)
                piece = piece.replace(b"\x00", b"")
                self.nul_bytes += n - len(piece)
            if skipping:
                nl = piece.find(b"\n")
                if nl < 0:
                    self.cut_bytes += len(piece)
                    continue
                self.cut_bytes += nl + 1
                piece = piece[nl + 1:]
                skipping = False
            nl = piece.find(b"\n")
            if nl < 0:
                carry += piece
                if len(carry) > LINE_MAX:
                    yield carry[:LINE_MAX] + b"\n"
                    self.cut_lines += 1
                    self.cut_bytes += len(carry) - LINE_MAX
                    carry = b""
                    skipping = True
                continue
            if len(carry) + nl > LINE_MAX:  # the line that began in an earlier piece is too long
                line = carry + piece[:nl]
                yield line[:LINE_MAX] + b"\n"
                self.cut_lines += 1
                self.cut_bytes += len(line) - LINE_MAX
                carry = b""
                piece = piece[nl + 1:]
            last = piece.rfind(b"\n")
            if last < 0:
                carry = piece
                continue
            block = carry + piece[:last + 1] if carry else piece[:last + 1]
            carry = piece[last + 1:]
            if block:
                yield block
        if first and (carry or sample):
            reason = binary_reason(sample)
            if reason:
                raise TriageError(reason, field="body")
            self.bytes += len(carry)
            if b"\x00" in carry:
                n = len(carry)
                carry = carry.replace(b"\x00", b"")
                self.nul_bytes += n - len(carry)
        if carry and not skipping:
            if len(carry) > LINE_MAX:
                self.cut_lines += 1
                self.cut_bytes += len(carry) - LINE_MAX
                carry = carry[:LINE_MAX]
            yield carry + b"\n"
