"""The answer of a triage as plain data: messages by count with their entries and runbooks, unrecognised
errors, a per-minute timeline, what to look at first and why, and what could not be read."""

from __future__ import annotations

import datetime as dt
import functools
import math

from kb.triage.severity import ERRORS, RANK
from kb.triage.tally import Group, Tally

MAX_BUCKETS = 1440        # a day of minutes; a longer log is counted in wider buckets
TOP = 3
WEIGHT = {"PANIC": 1000.0, "FATAL": 30.0, "ERROR": 10.0, "WARNING": 3.0}


@functools.lru_cache(maxsize=65536)
def _minute(text: str) -> dt.datetime | None:
    """A "YYYY-MM-DD HH:MM..." timestamp's minute (cached: a report reads the same minutes many times)."""
    try:
        return dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]))
    except (ValueError, IndexError):
        return None


def _severities(g: Group) -> dict[str, int]:
    return dict(sorted(g.severities.items(), key=lambda kv: RANK.get(kv[0], 99)))


def worst(g: Group) -> str:
    return min(g.severities, key=lambda s: RANK.get(s, 99)) if g.severities else "LOG"


class Timeline:
    """Minute counts laid out in buckets from the log's first minute to its last."""

    def __init__(self, minutes: dict[str, list[int]]):
        stamps = {m: _minute(m) for m in minutes}
        known = [t for t in stamps.values() if t is not None]
        self.start = min(known) if known else None
        self.end = max(known) if known else None
        if self.start is None:
            self.width, self.buckets = 1, []
            return
        span = int((self.end - self.start).total_seconds() // 60) + 1
        self.width = max(1, math.ceil(span / MAX_BUCKETS))
        n = math.ceil(span / self.width)
        self.buckets = [[0, 0, 0] for _ in range(n)]
        for m, row in minutes.items():
            t = stamps[m]
            if t is None:
                continue
            b = self.buckets[self.index(t)]
            for i in range(3):
                b[i] += row[i]

    def index(self, t: dt.datetime) -> int:
        return int((t - self.start).total_seconds() // 60) // self.width

    def label(self, i: int) -> str:
        return (self.start + dt.timedelta(minutes=i * self.width)).strftime("%Y-%m-%d %H:%M")

    def of_group(self, g: Group) -> list[int]:
        out = [0] * len(self.buckets)
        for m, n in g.minutes.items():
            t = _minute(m)
            if t is not None and self.start <= t <= self.end:
                out[self.index(t)] += n
        return out

    def as_dict(self) -> dict:
        return {"bucket_minutes": self.width,
                "start": self.start.strftime("%Y-%m-%d %H:%M") if self.start else None,
                "end": self.end.strftime("%Y-%m-%d %H:%M") if self.end else None,
                "buckets": [{"minute": self.label(i), "messages": b[0], "errors": b[1], "warnings": b[2]}
                            for i, b in enumerate(self.buckets)]}


def _entry(svc, slug: str | None) -> tuple[dict | None, list[dict]]:
    if slug is None or slug not in svc.catalog.entries:
        return None, []
    e = svc.catalog.entries[slug]
    runbooks = [{"id": r, "title": svc.catalog.runbooks[r].title, "url": f"/runbooks/{r}"}
                for r in e.meta.runbooks if r in svc.catalog.runbooks]
    return {"slug": slug, "title": e.meta.title, "url": e.url, "sqlstates": list(e.meta.sqlstate)}, runbooks


def _hm(ts: str | None) -> str:
    """A timestamp as a person reads it in a sentence: the time of day, with the date when it is there."""
    return ts[:19] if ts and _minute(ts) else (ts or "?")


def _why(g: Group, item: dict, timeline: Timeline) -> str:
    """The pattern that makes a message worth a look, in words."""
    sev = worst(g)
    n = item["count"]
    times = "once" if n == 1 else f"{n:,} times"
    if len(g.severities) > 1:  # "4 times (2 WARNING, 2 LOG)": a line of each severity, not all of the worst
        times += " (" + ", ".join(f"{c:,} {s}" for s, c in _severities(g).items()) + ")"
    first, last = item["first"], item["last"]
    if sev == "PANIC":
        if n == 1:
            return f"PANIC once, at {_hm(first)}: the server stopped"
        return f"PANIC {times}: the server stopped each time (first at {_hm(first)}, last at {_hm(last)})"
    if n == 1:
        return f"{sev} once, at {_hm(first)}"
    if len(g.severities) > 1:
        sev = "seen"
    t0, t1 = (_minute(first) if first else None), (_minute(last) if last else None)
    if timeline.start is not None and t0 is not None and t1 is not None and item["minutes"] is not None:
        span = (timeline.end - timeline.start).total_seconds() / 60 + 1
        tail = max(2.0, span * 0.05)
        since = (timeline.end - t0).total_seconds() / 60 + 1
        started_late = (t0 - timeline.start).total_seconds() / 60 >= tail
        to_the_end = (timeline.end - t1).total_seconds() / 60 <= tail
        if started_late and to_the_end and g.active >= 0.5 * since and since >= 3:
            return (f"{sev} {times}: started at {_hm(first)} and went on until the end of the log "
                    f"(in {g.active:,} of the {int(since):,} minutes since)")
        if g.minutes:
            peak_minute, peak = max(g.minutes.items(), key=lambda kv: kv[1])
            if n >= 5 and peak >= 0.5 * n and g.active > 1:
                return f"{sev} {times}, {peak:,} of them in the minute of {peak_minute}"
        if span >= 10 and g.active >= 0.5 * span:
            return f"{sev} {times}, throughout the log (in {g.active:,} of its {int(span):,} minutes)"
    return f"{sev} {times}, from {_hm(first)} to {_hm(last)}"


def _score(g: Group, item: dict, timeline: Timeline) -> float:
    sev = worst(g)
    weight = WEIGHT.get(sev, 2.0 if item.get("entry") else 0.0)
    if not weight:
        return 0.0
    score = weight * (1 + math.log10(max(1, item["count"])))
    if item.get("entry"):
        score *= 1.3
    if item["why"].startswith(f"{sev} ") and "until the end of the log" in item["why"]:
        score *= 1.6
    return score


def build_report(svc, tally: Tally, source, detected, wrapper, encoding: str, lines: int, seconds: float) -> dict:
    """The triage's answer (see the OpenAPI description of /api/v1/triage)."""
    groups = tally.all_groups()
    timeline = Timeline(tally.timeline)
    ts_of = tally.ts_of
    messages, unrecognised, ranked = [], [], []
    for g in sorted(groups, key=lambda g: (-g.count, g.order)):
        if not g.count:
            continue
        item = {"count": g.count, "severities": _severities(g),
                "sqlstates": [c for c, _n in sorted(g.sqlstates.items(), key=lambda kv: -kv[1])],
                "first": ts_of(g.first), "last": ts_of(g.last), "example": "\n".join(g.example),
                "minutes": g.active if g.followed and not g.sampled else None}
        if g.minutes and timeline.buckets and not g.sampled:
            item["timeline"] = timeline.of_group(g)
        ident = g.identity
        if ident is not None:
            entry, runbooks = _entry(svc, ident.slug)
            item = {"message": ident.template, "kind": "entry" if entry else "message",
                    "id": ident.message_id,
                    "url": entry["url"] if entry else f"/messages/{ident.message_id}",
                    **item, "entry": entry, "runbooks": runbooks,
                    "langs": sorted(lang for lang in g.langs if lang != "en")}
            if ident.message_id:
                item["message_url"] = f"/messages/{ident.message_id}"
            messages.append(item)
            where = ("messages", len(messages) - 1)
        else:
            item = {"text": g.text, **item}
            unrecognised.append(item)
            where = ("unrecognised", len(unrecognised) - 1)
        item["why"] = _why(g, item, timeline)
        ranked.append((_score(g, item, timeline), -g.order, where, item, g))
    top = []
    for score, _o, (section, index), item, g in sorted(ranked, key=lambda r: (-r[0], r[1]))[:TOP]:
        if score <= 0:
            break
        title = item.get("message") or item.get("text")
        top.append({"title": f"{worst(g)}: {title.strip()}", "why": item["why"], "url": item.get("url"),
                    "section": section, "index": index, "count": item["count"]})
    severities: dict[str, int] = {}
    for g in groups:
        for s, n in g.severities.items():
            severities[s] = severities.get(s, 0) + n
    for s, n in tally.other.items():
        severities[s] = severities.get(s, 0) + n
    notices = _notices(tally, source, encoding, lines)
    return {
        "lines": lines, "bytes": source.bytes, "compressed_bytes": source.bytes_in if source.compression else None,
        "compression": source.compression, "seconds": round(seconds, 3),
        "format": detected.format, "format_description": detected.description,
        "prefix": detected.prefix.text if detected.prefix is not None and not detected.generic else None,
        "wrapper": wrapper.name if wrapper is not None else None, "encoding": encoding,
        "records": tally.records, "continuation_lines": tally.continuations, "unparsed_lines": tally.unparsed,
        "severities": dict(sorted(severities.items(), key=lambda kv: RANK.get(kv[0], 99))),
        "errors": sum(n for s, n in severities.items() if s in ERRORS),
        "top": top, "messages": messages, "unrecognised": unrecognised,
        "unrecognised_capped": tally.capped,
        "unrecognised_other": dict(sorted(tally.other.items(), key=lambda kv: RANK.get(kv[0], 99))), "timeline": timeline.as_dict(),
        "cut_lines": source.cut_lines, "truncated": source.truncated, "notices": notices,
    }


def _notices(tally: Tally, source, encoding: str, lines: int) -> list[str]:
    out = []
    if source.truncated:
        out.append(f"The log is incomplete: {source.truncated}. This report covers what came before.")
    if source.cut_lines:
        out.append(f"{source.cut_lines:,} line(s) longer than 1 MiB were cut to their first MiB "
                   f"({source.cut_bytes:,} bytes skipped).")
    if source.nul_bytes:
        out.append(f"{source.nul_bytes:,} NUL bytes were skipped (a log file truncated while it was written, as "
                   "logrotate's copytruncate leaves, starts with them).")
    if encoding != "utf-8":
        out.append(f"The log is not UTF-8; it was read as {encoding}.")
    if tally.unparsed:
        share = tally.unparsed / max(1, lines)
        examples = "; ".join(repr(x) for x in tally.unparsed_examples)
        out.append(f"{tally.unparsed:,} line(s) ({share:.1%}) are not records of this log's format and were only "
                   f"counted, e.g. {examples}.")
    if tally.capped:
        out.append("More kinds of unrecognised errors than the report lists: the rest are counted together as "
                   "'(other unrecognised messages)'.")
    if tally.minutes_capped:
        out.append("The log spans too many minutes to keep every message's minute counts; some messages' "
                   "timelines are incomplete.")
    return out
