"""`kb check`, `kb index`, `kb search` and `kb serve`: the CLI commands about content and serving."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kb.errors import ContentInvalid
from kb.settings import load_config


def _catalog(cfg, strict: bool = False):
    from kb.service.catalog import load_catalog

    return load_catalog(Path(cfg.content_dir), Path(cfg.runbooks_dir), strict=strict)


@click.command()
@click.option("--strict", is_flag=True, help="Also fail on warnings.")
def check(strict: bool) -> None:
    """Validate content and runbooks; print every problem as path:line: field: reason."""
    cfg = load_config()
    try:
        cat = _catalog(cfg, strict=strict)
    except ContentInvalid as exc:
        for p in exc.problems:
            click.echo(str(p), err=True)
        n_err = sum(p.level == "error" for p in exc.problems)
        click.echo(f"{n_err} error(s), {len(exc.problems) - n_err} warning(s)", err=True)
        sys.exit(1)
    for p in cat.warnings:
        click.echo(str(p), err=True)
    click.echo(f"ok: {len(cat.entries)} entries, {len(cat.runbooks)} runbooks, {len(cat.warnings)} warning(s)")


@click.command()
def index() -> None:
    """Build (or reuse) the search index."""
    from kb.service import Service

    svc = Service.from_config(load_config())
    click.echo(f"index ready at {svc.search.index_dir} ({len(svc.catalog.entries)} entries)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--limit", default=10, show_default=True, help="Results to show.")
@click.argument("text")
def search(as_json: bool, limit: int, text: str) -> None:
    """Search for TEXT (use - to read the text from stdin)."""
    from kb.service import Service

    if text == "-":
        text = sys.stdin.read()
    svc = Service.from_config(load_config())
    result = svc.search_text(text, limit=limit)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if result.get("notice"):
        click.echo(f"{result['notice']}." + (" Entries with similar wording:" if result["results"] else ""))
    for r in result["results"]:
        name = r["slug"] or r["url"]
        how = {"message": "found", "sqlstate": "SQLSTATE", "related": "companion", "words": "similar wording"}[r["match"]]
        if r.get("message"):
            lang = f", {r['lang']}" if r.get("lang") not in (None, "en") else ""
            how += f" {r['message']['template'].strip()!r}{lang}"
            if r["message"]["values"]:
                how += " with " + ", ".join(repr(v) for v in r["message"]["values"])
        elif r["matched"] and r["match"] != "words":
            how += f" {r['matched']!r}"
        click.echo(f"{r['kind']:7}  {name}  {r['title']}  [{how}]")


@click.command()
@click.option("--host", default=None, help="Bind address (default KB_HOST).")
@click.option("--port", default=None, type=int, help="Port (default KB_PORT).")
@click.option("--workers", default=1, show_default=True, help="gunicorn worker processes; 0 runs Flask's development server.")
def serve(host, port, workers) -> None:
    """Serve the knowledge base (builds the index on demand)."""
    from kb.web.server import serve as run_server

    cfg = load_config()
    run_server(cfg, host or cfg.host, port or cfg.port, workers)
