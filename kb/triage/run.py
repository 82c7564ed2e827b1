"""One triage: read the stream, tell its format from the first block, count every block, report."""

from __future__ import annotations

import time
from typing import BinaryIO, Callable

from kb.triage.classify import Classifier
from kb.triage.errors import TriageError
from kb.triage.formats import detect
from kb.triage.report import build_report
from kb.triage.severity import severity_words
from kb.triage.source import LogSource
from kb.triage.stderr import StderrScanner
from kb.triage.structured import DIGITS, PGBOUNCER_WORDS, CsvScanner, JsonScanner, PgBouncerScanner
from kb.triage.tally import Tally
from kb.triage.wrappers import Syslog, detect_wrapper

SAMPLE_LINES = 2000


def _encoding(block: bytes) -> str:
    """UTF-8, unless most non-ASCII bytes of the first block are not UTF-8 (a LATIN1 server's log)."""
    try:
        block.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    text = block.decode("utf-8", "replace")
    high = sum(1 for b in block if b >= 0x80)
    return "latin-1" if text.count("\ufffd") * 2 >= high else "utf-8"


def triage(raw: BinaryIO, svc, prefix: str | None = None, fmt: str | None = None,
           progress: Callable[[int], None] | None = None, max_bytes: int | None = None) -> dict:
    """Triage the log read from `raw` (plain or gzip); raises TriageError for input that is not a log."""
    started = time.perf_counter()
    source = LogSource(raw, progress, max_bytes)
    blocks = source.blocks()
    first = next(blocks, None)
    if first is None or not first.strip():
        if source.truncated:
            raise TriageError(f"no log text could be read: {source.truncated}")
        raise TriageError("the log is empty", status=400, field="body")
    sample = first.split(b"\n", SAMPLE_LINES)[:SAMPLE_LINES]
    wrapper = detect_wrapper(sample)
    raw_first = first
    if wrapper is not None:
        first = wrapper.unwrap(raw_first)
    encoding = _encoding(first)
    text = first.decode(encoding, "replace")
    lines = text.split("\n", SAMPLE_LINES)[:SAMPLE_LINES]
    words = severity_words(svc.messages)
    detected = detect(lines, {**words, **PGBOUNCER_WORDS} if fmt == "pgbouncer" else words, prefix, fmt)
    if isinstance(wrapper, Syslog) and detected.format == "stderr" and detected.prefix.ts_slice is None \
            and (detected.generic or "ts" not in detected.prefix.regex.groupindex):
        # the server's prefix has no time: read syslog's instead
        wrapper.keep_time = True
        first = wrapper.unwrap(raw_first)
        text = first.decode(encoding, "replace")
        detected = detect(text.split("\n", SAMPLE_LINES)[:SAMPLE_LINES], words, prefix, fmt)
    if detected.format == "pgbouncer":
        tally = Tally(Classifier(svc, engines=("pgbouncer",)), PGBOUNCER_WORDS)
        scanner = PgBouncerScanner(tally)
    else:
        tally = Tally(Classifier(svc), words)
        scanner = {"stderr": lambda: StderrScanner(detected.prefix, tally), "csvlog": lambda: CsvScanner(tally),
                   "jsonlog": lambda: JsonScanner(tally)}[detected.format]()
    line_count = 0

    def feed(block: bytes, text: str | None = None) -> None:
        nonlocal line_count
        line_count += block.count(b"\n")
        if text is None:
            text = block.decode(encoding, "replace")
        scanner.scan(text, block.translate(DIGITS).decode(encoding, "replace"))

    feed(first, text)
    for block in blocks:
        if wrapper is not None:
            block = wrapper.unwrap(block)
        feed(block)
    if wrapper is not None:
        rest = wrapper.finish()
        if rest:
            feed(rest)
    if hasattr(scanner, "finish"):
        scanner.finish()
    seconds = time.perf_counter() - started
    return build_report(svc, tally, source, detected, wrapper, encoding, line_count, seconds)
