"""Databases the tool may diagnose, named by the operator; DSNs never leave this module's objects."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict

from kb.errors import ConfigError
from kb.settings import Config

PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
KEYS = {"dsn", "reserved_dsn", "description", "kind", "cap", "roles"}


@dataclass
class Target:
    """A named database. `dsn` and `reserved_dsn` are secrets: never rendered, logged or returned."""

    name: str
    dsn: str = field(repr=False)
    description: str = ""
    kind: str = "postgresql"  # or "pgbouncer" (admin console)
    cap: int = 1
    roles: tuple[str, ...] = ("operator", "admin")
    reserved_dsn: str | None = field(default=None, repr=False)

    def public(self) -> dict:
        """What clients may see."""
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "cap": self.cap, "roles": list(self.roles), "reserved_connection": self.reserved_dsn is not None}

    def secrets(self) -> list[str]:
        """Strings that must be scrubbed from any message about this target."""
        out = []
        for dsn in (self.dsn, self.reserved_dsn):
            if not dsn:
                continue
            out.append(dsn)
            try:
                out.append(conninfo_to_dict(dsn).get("password") or "")
            except psycopg.Error:
                pass
            for m in re.finditer(r"(?:password\s*=\s*|://[^:/@\s]*:)('(?:[^'\\]|\\.)*'|\S+@|\S+)", dsn):
                out.append(m.group(1).rstrip("@").strip("'"))
        return [s for s in out if len(s) >= 3]


def load_targets(cfg: Config, environ: dict | None = None) -> dict[str, Target]:
    """Targets from `[targets.NAME]` tables plus `default` from DATABASE_URL or the PG* variables."""
    env = os.environ if environ is None else environ
    targets: dict[str, Target] = {}
    for name, table in (cfg.targets or {}).items():
        if not NAME_RE.match(name):
            raise ConfigError(f"targets.{name}: a target name is letters, digits, '_', '.', '-'")
        if not isinstance(table, dict) or "dsn" not in table:
            raise ConfigError(f"targets.{name}: needs a `dsn`")
        unknown = set(table) - KEYS
        if unknown:
            raise ConfigError(f"targets.{name}: unknown key(s) {', '.join(sorted(unknown))}")
        kind = table.get("kind", "postgresql")
        if kind not in ("postgresql", "pgbouncer"):
            raise ConfigError(f"targets.{name}.kind: postgresql or pgbouncer")
        cap = int(table.get("cap", cfg.target_cap))
        if not 1 <= cap <= 10:
            raise ConfigError(f"targets.{name}.cap: between 1 and 10")
        roles = tuple(table.get("roles", ("operator", "admin")))
        for key in ("dsn", "reserved_dsn"):
            _check_dsn(f"targets.{name}.{key}", table.get(key))
        targets[name] = Target(name, str(table["dsn"]), str(table.get("description", "")), kind, cap, roles,
                               table.get("reserved_dsn"))
    if "default" not in targets:
        if cfg.database_url:
            _check_dsn("DATABASE_URL", cfg.database_url)
            targets["default"] = Target("default", cfg.database_url, "DATABASE_URL", cap=cfg.target_cap)
        elif any(env.get(k) for k in PG_ENV):
            targets["default"] = Target("default", "", "libpq PG* environment", cap=cfg.target_cap)
    return targets


def _check_dsn(where: str, dsn) -> None:
    """Refuse a connection string libpq would misread, before a misread password reaches an error.

    libpq's own messages quote the text it could not read, password fragments included, so the
    message here names the setting and the rule, never any of the string.
    """
    if not dsn:
        return
    rule = ("in a URL, percent-encode '@', '/', ':', '?', '#' and spaces in the user name and password "
            "(%40, %2F, %3A, %3F, %23, %20); in key=value form, quote a value with spaces: password='a b'")
    try:
        opts = conninfo_to_dict(str(dsn))
    except psycopg.Error:
        raise ConfigError(f"{where}: libpq cannot read this connection string; {rule}") from None
    if any(c in opts.get(k, "") for k in ("host", "hostaddr") for c in "@ ") or \
            not re.fullmatch(r"[0-9,]*", opts.get("port", "")):
        raise ConfigError(f"{where}: its host or port reads as part of a user name or password (an "
                          f"unencoded character in it); {rule}")


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced, and any password=... or URL password masked."""
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    text = re.sub(r"(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.I)
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)\S+@", r"\1***@", text)
