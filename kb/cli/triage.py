"""`kb triage FILE|-`: what went wrong in a whole log, with a progress bar on a terminal."""

from __future__ import annotations

import json
import os
import stat
import sys

import click

from kb.settings import load_config

SPARKS = "▁▂▃▄▅▆▇█"
LISTED = 20  # messages of each section shown without --all


def sparkline(values: list[int], width: int = 60) -> str:
    """Counts as a line of block characters, at most `width` long (wider buckets summed)."""
    if not values:
        return ""
    step = max(1, -(-len(values) // width))
    cells = [sum(values[i:i + step]) for i in range(0, len(values), step)]
    top = max(cells) or 1
    return "".join(" " if not v else SPARKS[min(len(SPARKS) - 1, (v * len(SPARKS) - 1) // top)] for v in cells)


def _size(f) -> int | None:
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class _Progress:
    """A progress bar on stderr when it is a terminal: bytes read of the file's size, or a running count."""

    def __init__(self, size: int | None):
        self.size = size
        self.bar = None
        self.done = 0
        if sys.stderr.isatty():
            if size:
                self.bar = click.progressbar(length=size, label="reading", file=sys.stderr, show_eta=True)
                self.bar.__enter__()
            else:
                self.bar = False

    def __call__(self, n: int) -> None:
        if self.bar:
            self.bar.update(n - self.done)
        elif self.bar is False and n - self.done >= 8 << 20:
            click.echo(f"\rreading: {n / 1e6:,.0f} MB", err=True, nl=False)
        else:
            return
        self.done = n

    def close(self) -> None:
        if self.bar:
            self.bar.__exit__(None, None, None)
        elif self.bar is False and self.done:
            click.echo("", err=True)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _print(result: dict, show_all: bool) -> None:
    size = f"{result['bytes'] / 1e6:,.1f} MB" if result["bytes"] >= 1e6 else f"{result['bytes'] / 1e3:,.1f} KB"
    head = (f"{size}, {_count(result['lines'], 'line')} in {result['seconds']:.1f} s: "
            f"{result['format_description']}")
    if result["wrapper"]:
        head += f", wrapped by {result['wrapper']}"
    if result["compression"]:
        head += f" ({result['compression']})"
    click.echo(head)
    sev = ", ".join(f"{n:,} {s}" for s, n in result["severities"].items())
    tl = result["timeline"]
    span = f" · {tl['start']} → {tl['end']}" if tl["start"] else ""
    click.echo(f"{_count(result['records'], 'message')} ({sev}){span}")
    if tl["buckets"]:
        errors = [b["errors"] for b in tl["buckets"]]
        if any(errors):
            click.echo(f"errors per {tl['bucket_minutes'] if tl['bucket_minutes'] > 1 else ''}"
                       f"{' minutes' if tl['bucket_minutes'] > 1 else 'minute'}: {sparkline(errors)}")
    if result["top"]:
        click.echo("\nLook at first:")
        for i, t in enumerate(result["top"], 1):
            click.echo(f"  {i}. {t['title']}")
            click.echo(f"     {t['why']}")
            item = result[t["section"]][t["index"]]
            links = [t["url"]] if t.get("url") else []
            links += [f"runbook {r['id']} ({r['url']})" for r in item.get("runbooks", [])]
            if links:
                click.echo("     → " + " · ".join(links))
    errors = [m for m in result["messages"] if set(m["severities"]) & {"PANIC", "FATAL", "ERROR", "WARNING"}]
    other = [m for m in result["messages"] if m not in errors]
    for title, items in (("Errors and warnings", errors), ("Other messages", other)):
        if not items:
            continue
        click.echo(f"\n{title}:")
        for m in items if show_all else items[:LISTED]:
            sev = "/".join(m["severities"])
            where = m["entry"]["url"] if m["entry"] else m["url"]
            codes = f" [{', '.join(m['sqlstates'])}]" if m["sqlstates"] else ""
            click.echo(f"  {m['count']:>9,}  {sev:<8} {m['message'].strip()}{codes}  → {where}")
        if not show_all and len(items) > LISTED:
            click.echo(f"  … and {len(items) - LISTED} more (--all lists them)")
    if result["unrecognised_other"]:
        rest = ", ".join(f"{n:,} {s}" for s, n in result["unrecognised_other"].items())
        click.echo(f"  (and lines of no known message, counted only: {rest})")
    if result["unrecognised"]:
        click.echo("\nUnrecognised errors:")
        items = result["unrecognised"]
        for u in items if show_all else items[:LISTED]:
            click.echo(f"  {u['count']:>9,}  {'/'.join(u['severities']):<8} {u['text']}")
        if not show_all and len(items) > LISTED:
            click.echo(f"  … and {len(items) - LISTED} more (--all lists them)")
    for notice in result["notices"]:
        click.echo(f"\nnote: {notice}", err=True)


@click.command("triage")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--prefix", default=None,
              help="The server's log_line_prefix (SHOW log_line_prefix), for a stderr log whose prefix is unusual.")
@click.option("--format", "fmt", type=click.Choice(["stderr", "csvlog", "jsonlog", "pgbouncer"]), default=None,
              help="The log's format (told from its first lines when not given).")
@click.option("--all", "show_all", is_flag=True, help="List every message, not the first 20 of each section.")
@click.argument("path")
def triage(as_json: bool, prefix: str | None, fmt: str | None, show_all: bool, path: str) -> None:
    """What went wrong in a PostgreSQL or PgBouncer log (PATH, plain or gzip; - reads stdin)."""
    from kb.service import Service
    from kb.triage import triage as run_triage

    svc = Service.from_config(load_config())
    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror}") from None
    progress = _Progress(_size(f))
    try:
        result = run_triage(f, svc, prefix=prefix, fmt=fmt, progress=progress)
    finally:
        progress.close()
        if f is not sys.stdin.buffer:
            f.close()
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print(result, show_all)
