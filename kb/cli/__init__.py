"""The `kb` command: a thin layer over the service layer; kb's own errors become messages here.

Owns the command line only. May import every other package of kb; nothing imports it.
"""

from __future__ import annotations

import sys

import click

from kb.cli.content import check, index, search, serve
from kb.cli.runs import run_cmd, sandbox, token
from kb.cli.triage import triage
from kb.errors import ConfigError, ContentInvalid, KbError


@click.group()
def cli() -> None:
    """Troubleshooting knowledge base for PostgreSQL errors, with guided runbooks."""


for _command in (check, index, search, serve, run_cmd, token, sandbox, triage):
    cli.add_command(_command)


def main() -> None:
    """Entry point: run the CLI, turning kb's own errors into messages."""
    try:
        cli(standalone_mode=True)
    except ContentInvalid as exc:
        for p in exc.problems:
            click.echo(str(p), err=True)
        sys.exit(1)
    except (ConfigError, KbError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
