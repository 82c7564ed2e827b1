"""`kb run`, `kb token` and `kb sandbox`: the CLI commands about runs, identities and scenarios."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from pathlib import Path

import click

from kb.settings import load_config


def _service():
    from kb.service import Service

    return Service.from_config(load_config())


def _table(columns, rows, limit=20) -> None:
    if not columns:
        return
    cells = [[("" if v is None else str(v))[:60] for v in r] for r in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    click.echo("  " + "  ".join("-" * w for w in widths))
    for r in cells:
        click.echo("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))
    if len(rows) > limit:
        click.echo(f"  ... {len(rows) - limit} more rows")


def _show_step(s: dict) -> None:
    click.secho(f"\n{s['seq']}. {s['title']}  [{s['kind']}]", bold=True)
    if s.get("purpose"):
        click.echo(f"   {s['purpose']}")
    if s.get("sql") and s["kind"] in ("diagnostic", "action", "preview"):
        click.secho("   " + s["sql"].strip().replace("\n", "\n   "), fg="cyan")
    if s.get("columns"):
        _table(s["columns"], s.get("rows") or [])
        if s.get("truncated"):
            click.echo(f"   (rows capped: kept {len(s['rows'])} of {s['row_count']})")
    if s.get("duration_ms") is not None:
        click.echo(f"   {s['duration_ms']} ms")
    if s.get("effect"):
        click.secho(f"   done: {s['effect']}", fg="green")
    if s.get("error"):
        e = s["error"]
        click.secho(f"   {e['condition']}" + (f" ({e['sqlstate']})" if e.get("sqlstate") else "") + f": {e['message']}", fg="red")
        if e.get("entry"):
            click.echo(f"   see {e['entry']['title']} ({e['entry']['url']})")
    if s.get("branch"):
        b = s["branch"]
        say = f"{b['say']}: " if b.get("say") else ""
        click.secho(f"   -> {say}{b['reason']} -> {b['goto_title']}", fg="yellow")
    if s.get("conclusion"):
        c = s["conclusion"]
        click.secho(f"   VERDICT ({c['status']}): {c['verdict']}", fg="green" if c["status"] == "ok" else "magenta", bold=True)
        if c.get("body"):
            click.echo(f"   {c['body']}")
        for f in c.get("fix") or []:
            click.echo(f"   fix: {f['label']} {f['url']}")


@click.command("run")
@click.argument("runbook")
@click.option("--target", required=True, help="Target name from kb.toml or `default` (DATABASE_URL / PG*).")
@click.option("--param", "params", multiple=True, help="k=v, repeatable.")
@click.option("--yes", is_flag=True, help="Confirm actions without asking (still shows their preview).")
@click.option("--as-admin", is_flag=True, help="Act as admin so actions may be confirmed (local terminal use).")
def run_cmd(runbook, target, params, yes, as_admin) -> None:
    """Walk through RUNBOOK against TARGET in the terminal."""
    from kb.web.auth import Identity

    svc = _service()
    values = {}
    for p in params:
        k, sep, v = p.partition("=")
        if not sep:
            raise click.BadParameter(f"{p!r}: expected k=v", param_hint="--param")
        values[k] = v
    import getpass

    ident = Identity(f"cli:{getpass.getuser()}", "admin" if as_admin else "operator", "cli")
    run = svc.runs.start(runbook, target, values, ident, auto=False)
    shown = 0
    while True:
        for s in run["steps"][shown:]:
            _show_step(s)
        shown = len(run["steps"])
        cur = run["current"]
        if run["status"] != "active" or cur is None:
            break
        if cur["kind"] == "diagnostic":
            run = svc.runs.advance(run["id"], ident, step=cur["id"])
        elif cur["kind"] == "question":
            click.secho(f"\n? {cur['question']}", bold=True)
            for i, a in enumerate(cur["answers"], 1):
                click.echo(f"  {i}. {a['label']}")
            n = _ask(svc, run, ident, "Answer", type=click.IntRange(1, len(cur["answers"])))
            run = svc.runs.advance(run["id"], ident, answer=cur["answers"][n - 1]["value"], step=cur["id"])
        elif cur["kind"] == "action":
            click.secho(f"\n! Action: {cur['title']}", bold=True, fg="red")
            if not ident.can("admin"):  # said before asking: a yes could not run it
                click.echo("Running an action needs the admin role: rerun with --as-admin to be able to run it. "
                           "Skipping it; nothing is changed.")
                ok = False
            else:
                ok = yes or _ask(svc, run, ident, "Type yes to run it, anything else to skip", default="no") == "yes"
            run = svc.runs.advance(run["id"], ident, confirm=ok, step=cur["id"])
    click.echo(f"\n{run['summary']}\nrun {run['id']}: transcript with `curl .../api/v1/runs/{run['id']}/transcript`")
    sys.exit(0 if run["status"] == "finished" else 1)


def _ask(svc, run, ident, text, **kw):
    """click.prompt; when the person leaves instead (Ctrl-C, end of input), the run ends as abandoned
    now rather than being listed as active until KB_ABANDON_AFTER passes."""
    try:
        return click.prompt(text, **kw)
    except click.Abort:
        svc.runs.abandon(run["id"], ident, "left unanswered in the terminal")
        click.echo(f"\nrun {run['id']} abandoned", err=True)
        raise


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (stored only as hashes)."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "operator", "admin"]), default="operator", show_default=True)
def token_create(name, role) -> None:
    """Create a token for NAME; it is printed once."""
    import secrets

    from kb.runbooks.store import RunStore
    from kb.web.auth import new_token, token_digest

    cfg = load_config()
    store = RunStore(cfg.store_url, cfg.instance_path)
    first = not store.has_active_tokens()
    tok = new_token()
    store.add_token(secrets.token_hex(4), name, role, token_digest(tok))
    click.echo(tok)
    if first and not (cfg.users or cfg.trusted_proxies):
        # on stderr: stdout is the token alone, for scripts
        click.echo("This is the first token: a kb server on a loopback address no longer treats browsers that "
                   "have not signed in as the local operator. They can now only read; sign in at /login with a "
                   "token to start runs or confirm actions.", err=True)


@token.command("list")
def token_list() -> None:
    """List tokens (never their values)."""
    from kb.runbooks.store import RunStore

    cfg = load_config()
    for t in RunStore(cfg.store_url, cfg.instance_path).tokens():
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        click.echo(f"{t['id']}  {t['name']:20}  {t['role']:8}  {t['created_at']}  {state}")


@token.command("revoke")
@click.argument("key")
def token_revoke(key) -> None:
    """Revoke tokens by id or name."""
    from kb.runbooks.store import RunStore

    cfg = load_config()
    n = RunStore(cfg.store_url, cfg.instance_path).revoke_token(key)
    click.echo(f"revoked {n} token(s)")
    sys.exit(0 if n else 1)


@click.command()
@click.argument("scenario", required=False)
@click.option("--list", "list_", is_flag=True, help="List the scenarios.")
def sandbox(scenario, list_) -> None:
    """Start a throwaway cluster in SCENARIO's state and keep it until Ctrl-C."""
    from kb import scenarios
    from kb.scenarios.cluster import destroy_all

    if list_ or not scenario:
        for sc in scenarios.SCENARIOS.values():
            click.echo(f"{sc.name:28} {sc.runbook:26} {sc.description}")
        return
    if scenario not in scenarios.SCENARIOS:
        raise click.BadParameter(f"unknown scenario {scenario!r}; see kb sandbox --list", param_hint="SCENARIO")
    sc = scenarios.SCENARIOS[scenario]
    stop_on_signals()
    try:
        cluster, holder = scenarios.start(scenario)
        try:
            t = sc.target(cluster)
            click.echo(f"sandbox {scenario!r} is up (PostgreSQL in {cluster.base}).")
            for line in sandbox_hint(Path(os.environ.get("KB_CONFIG") or "kb.toml"), t):
                click.echo(line)
            params = " ".join(f"--param {k}={v}" for k, v in sc.params.items())
            click.echo(f"\n  kb run {sc.runbook} --target sandbox {params}".rstrip())
            click.echo("\nCtrl-C stops the sandbox and removes the cluster.")
            while True:
                signal.pause()
        finally:
            _ignore_signals()
            holder.close()
            cluster.destroy()
    except Stopped as exc:
        click.echo(f"sandbox stopped ({exc}); cluster removed", err=True)
    finally:
        _ignore_signals()
        destroy_all()


def sandbox_hint(config: Path, target: dict) -> list[str]:
    """How to point kb at the sandbox without overwriting the configuration file: append to it, or,
    when it has a sandbox target already, say which lines to change."""
    table = ["[targets.sandbox]", f'dsn = "{target["dsn"]}"']
    if target.get("reserved_dsn"):
        table.append(f'reserved_dsn = "{target["reserved_dsn"]}"')
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError):
        text = ""
    name = shlex.quote(str(config))
    if text is not None and re.search(r"^\s*\[\s*targets\.sandbox\s*\]", text, re.M):
        return [f"{config} has a [targets.sandbox] table already: set its lines to these (appending a second one "
                "would make the file invalid):\n", *("  " + line for line in table)]
    what = "adds a target to" if text is not None else "creates"
    return [f"Point kb at it (this {what} {config}; nothing in it is overwritten):\n",
            f"  cat >> {name} <<'EOF'", *([""] if text else []), *("  " + line for line in table), "  EOF"]


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind, so every finally block removes what it started."""


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into Stopped, so cleanup runs whichever one ends the process."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stopped)


def _ignore_signals() -> None:
    """While removing the cluster, a second Ctrl-C must not interrupt the removal."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
