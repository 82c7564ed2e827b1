"""Every setting, declared once with its default and meaning; read from TOML then environment."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kb.errors import ConfigError

# content/, runbooks/ and static/ sit at the top of the repository; a built package carries copies of
# them in kb/shipped/ (see setup.py), while a checkout or an editable install reads them in place.
PACKAGE_DATA = Path(__file__).resolve().parent / "shipped"
SOURCE_TREE = Path(__file__).resolve().parent.parent
SHIPPED = ("content", "runbooks", "static")


def shipped(name: str) -> Path:
    """The folder `name` (content, runbooks or static) that kb ships, wherever this kb is installed."""
    if (PACKAGE_DATA / name).is_dir():
        return PACKAGE_DATA / name
    if (SOURCE_TREE / "pyproject.toml").is_file() and (SOURCE_TREE / name).is_dir():
        return SOURCE_TREE / name
    raise ConfigError(f"kb's {name}/ folder is missing from {PACKAGE_DATA}: reinstall kb")


@dataclass(frozen=True)
class Setting:
    """One setting: environment name, TOML key, default, parser and a one-line description."""

    env: str
    key: str
    default: Any
    parse: Callable[[str], Any]
    help: str


def _bool(value: str) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _list(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _role(*allowed: str):
    def parse(value) -> str:
        text = str(value).strip().lower()
        if text not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return text
    return parse


SETTINGS: list[Setting] = [
    Setting("KB_CONFIG", "config", "kb.toml", str, "Path of the TOML configuration file."),
    Setting("DATABASE_URL", "database_url", None, str, "DSN of the target named `default` (else the libpq PG* variables)."),
    Setting("KB_STORE_URL", "store_url", None, str, "PostgreSQL DSN of the run store; a SQLite file in the instance folder when unset."),
    Setting("KB_SLACK_SIGNING_SECRET", "slack_signing_secret", None, str, "Enables POST /chat/slack and verifies its requests."),
    Setting("KB_MATTERMOST_TOKEN", "mattermost_token", None, str, "Mattermost slash command token(s), comma-separated: enables POST /chat/slack for the requests that carry one."),
    Setting("KB_SECRET_KEY", "secret_key", None, str, "Session signing key; generated and kept in the instance folder when unset."),
    Setting("KB_CONTENT_DIR", "content_dir", None, str, "Folder of error entries (Markdown); the entries kb ships when unset."),
    Setting("KB_RUNBOOKS_DIR", "runbooks_dir", None, str, "Folder of runbooks (YAML); the runbooks kb ships when unset."),
    Setting("KB_INSTANCE_DIR", "instance_dir", "instance", str, "Folder for the search index, run store and secret key."),
    Setting("KB_INDEX_DIR", "index_dir", None, str, "Folder of the search index (default: the instance folder)."),
    Setting("KB_HOST", "host", "127.0.0.1", str, "Address `kb serve` binds to."),
    Setting("KB_PORT", "port", 8080, int, "Port `kb serve` listens on."),
    Setting("KB_CONNECT_TIMEOUT", "connect_timeout", 3, int, "Seconds to wait when connecting to a target (libpq raises values below 2 to 2)."),
    Setting("KB_STATEMENT_TIMEOUT_MS", "statement_timeout_ms", 5000, int, "statement_timeout of diagnostic steps."),
    Setting("KB_LOCK_TIMEOUT_MS", "lock_timeout_ms", 1000, int, "lock_timeout of diagnostic and action steps."),
    Setting("KB_IDLE_TIMEOUT_MS", "idle_timeout_ms", 10000, int, "idle_in_transaction_session_timeout of the tool's own sessions."),
    Setting("KB_TARGET_CAP", "target_cap", 1, int, "Default connections per target shared by all runs of a process."),
    Setting("KB_TARGET_IDLE_SECONDS", "target_idle_seconds", 2.0, float, "Seconds an idle connection to a target is kept for the next step (0 closes it after every step)."),
    Setting("KB_BUSY_TIMEOUT", "busy_timeout", 10.0, float, "Seconds a step waits for a free connection slot before a `busy` outcome."),
    Setting("KB_MAX_ROWS", "max_rows", 200, int, "Rows kept per step result (the rest is counted, not stored)."),
    Setting("KB_MAX_STEPS", "max_steps", 50, int, "Steps a run may execute before it stops."),
    Setting("KB_ABANDON_AFTER", "abandon_after", 86400.0, float, "Seconds a run may wait for an answer, a confirmation or its next step before it ends as `abandoned` (0: never)."),
    Setting("KB_ANONYMOUS_ROLE", "anonymous_role", "reader", _role("none", "reader"), "Role of requests without an identity: none or reader (running anything needs a known identity)."),
    Setting("KB_TRUSTED_PROXIES", "trusted_proxies", [], _list, "Addresses whose user header is trusted (comma-separated)."),
    Setting("KB_PROXY_USER_HEADER", "proxy_user_header", "X-Forwarded-User", str, "Header naming the user behind a trusted proxy."),
    Setting("KB_PROXY_USER_ROLE", "proxy_user_role", "operator", _role("none", "reader", "operator", "admin"), "Role given to users named by a trusted proxy (unless listed in [users])."),
    Setting("KB_RATE_SEARCH", "rate_search", "120/60", str, "Searches allowed per identity: count/seconds."),
    Setting("KB_RATE_RUNS", "rate_runs", "20/60", str, "Runs started per identity: count/seconds."),
    Setting("KB_LOG_LEVEL", "log_level", "INFO", str, "Log level of the server."),
    Setting("KB_TRIAGE_MAX_BYTES", "triage_max_bytes", 256 * 1024 * 1024, int,
            "Largest log body POST /api/v1/triage and the /triage page accept, in bytes (413 beyond; gzip counts compressed)."),
]
BY_KEY = {s.key: s for s in SETTINGS}


@dataclass
class Config:
    """Resolved settings plus the structured TOML tables (targets, users, chat)."""

    values: dict[str, Any]
    targets: dict[str, dict] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    chat_users: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def instance_path(self) -> Path:
        path = Path(self.values["instance_dir"]).resolve()
        # it holds the run store, the session key and caches: only its owner may read or write it
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path


def load_config(overrides: dict | None = None, environ: dict | None = None) -> Config:
    """Defaults, then the TOML file, then the environment, then `overrides` (tests)."""
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    values = {s.key: s.default for s in SETTINGS}
    no_file = "config" in overrides and overrides["config"] is None  # tests: settings from overrides only
    path = Path(overrides.get("config") or env.get("KB_CONFIG") or "kb.toml")
    data: dict = {}
    source = None
    if no_file:
        pass
    elif path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        source = str(path)
    elif "config" in overrides or "KB_CONFIG" in env:
        raise ConfigError(f"{path}: configuration file not found")
    tables = {k: data.pop(k) for k in ("targets", "users", "chat_users") if k in data}
    for key, value in data.items():
        if key not in BY_KEY:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        values[key] = _coerce(BY_KEY[key], value, str(path))
    for s in SETTINGS:
        if s.env in env and env[s.env] != "":
            values[s.key] = _coerce(s, env[s.env], s.env)
    for key, value in overrides.items():
        if key == "config":
            continue
        if key in ("targets", "users", "chat_users"):
            tables[key] = value
        elif key in BY_KEY:
            values[key] = _coerce(BY_KEY[key], value, BY_KEY[key].env)
        else:
            raise ConfigError(f"unknown setting {key!r}")
    for key in ("content_dir", "runbooks_dir"):
        if not values[key]:
            values[key] = str(shipped(key.removesuffix("_dir")))
    for table in ("users", "chat_users"):  # a role no check knows would fail every request of that user
        entries = tables.get(table, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{source or 'configuration'}: [{table}] maps names to roles")
        for name, role in entries.items():
            if role not in ("none", "reader", "operator", "admin"):
                raise ConfigError(f"{source or 'configuration'}: {table}.{name}: {role!r} is not one of none, "
                                  "reader, operator, admin")
    return Config(values, tables.get("targets", {}), tables.get("users", {}),
                  tables.get("chat_users", {}), source)


def _coerce(setting: Setting, value: Any, where: str) -> Any:
    """Environment strings are parsed; TOML values arrive typed (lists still normalised)."""
    if not isinstance(value, str) and setting.parse is not _list:
        return value
    try:
        return setting.parse(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {setting.key}: {exc}") from exc
