"""Run store: runs, their steps, the audit trail and API tokens. SQLite (WAL) or PostgreSQL.

Every write that finishes a step is one transaction, so a killed server loses no finished step.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from kb.errors import RunStateError

_TABLES = """
CREATE TABLE IF NOT EXISTS target_slots (
    target TEXT NOT NULL, slot INTEGER NOT NULL, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (target, slot));
CREATE TABLE IF NOT EXISTS rate_hits (
    key TEXT NOT NULL, window_start BIGINT NOT NULL, hits INTEGER NOT NULL, PRIMARY KEY (key, window_start));
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, runbook TEXT NOT NULL, target TEXT NOT NULL, status TEXT NOT NULL,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    version INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS audit (
    id {serial} PRIMARY KEY, run_id TEXT, at TEXT NOT NULL, actor TEXT NOT NULL, event TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_run ON audit (run_id);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS chat_replays (key TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
"""


def now() -> str:
    """UTC timestamp, ISO 8601 with milliseconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Backend:
    placeholder = "?"

    def q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", "%s")


class _Sqlite(_Backend):
    def __init__(self, path: Path):
        self.path = path
        # runs hold rows read from production databases: the file is its owner's only (SQLite gives
        # its -wal and -shm files the same mode)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        path.chmod(0o600)
        self._local = threading.local()
        self._conn().executescript(_TABLES.format(serial="INTEGER"))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        # SQLite connections must not cross fork (gunicorn forks after the app is built)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn.cursor()

        def __exit__(self, et, ev, tb):
            self.conn.execute("COMMIT" if et is None else "ROLLBACK")
            return False

    def tx(self):
        return self._Tx(self._conn())


class _Postgres(_Backend):
    placeholder = "%s"

    def __init__(self, url: str):
        import psycopg

        self.url = url
        self._pool = None
        self._pid = None
        self._lock = threading.Lock()
        self._inherited: list = []
        with psycopg.connect(url, application_name="kb-store") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(424242)")
            for stmt in _TABLES.format(serial="BIGSERIAL").split(";"):
                if stmt.strip():
                    conn.execute(stmt)

    @property
    def pool(self):
        """This process's pool. `kb serve` builds the app before gunicorn forks its workers, and a
        connection inherited across fork would be one socket shared by two processes; each process
        therefore opens its own pool, and an inherited one is kept (never closed, which would end the
        parent's sessions) but not used."""
        if self._pid != os.getpid():
            from psycopg_pool import ConnectionPool  # the store is an ordinary app database: pooling fits

            with self._lock:
                if self._pid != os.getpid():
                    if self._pool is not None:
                        self._inherited.append(self._pool)
                    self._pool = ConnectionPool(self.url, min_size=1, max_size=4, open=True,
                                                kwargs={"application_name": "kb-store", "autocommit": False})
                    self._pid = os.getpid()
        return self._pool

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()

    class _Tx:
        def __init__(self, pool):
            self.pool = pool

        def __enter__(self):
            self.cm = self.pool.connection()
            self.conn = self.cm.__enter__()
            return self.conn.cursor()

        def __exit__(self, et, ev, tb):
            return self.cm.__exit__(et, ev, tb)

    def tx(self):
        return self._Tx(self.pool)


class RunStore:
    """Runs, steps, audit and tokens behind one small API."""

    def __init__(self, url: str | None, instance: Path):
        self.backend = _Postgres(url) if url else _Sqlite(instance / "runs.sqlite3")
        self.kind = "postgresql" if url else "sqlite"

    def close(self) -> None:
        """Release the store's connections (the PostgreSQL pool; SQLite keeps per-thread handles)."""
        if isinstance(self.backend, _Postgres):
            self.backend.close()

    def _exec(self, cur, sql: str, args=()):
        cur.execute(self.backend.q(sql), args)
        return cur

    # --- runs ------------------------------------------------------------------------------------
    def create_run(self, run: dict, state: dict, actor: str) -> None:
        """Insert a new run (version 1) with its audit line."""
        with self.backend.tx() as cur:
            self._exec(cur, "INSERT INTO runs (id, runbook, target, status, created_by, created_at, updated_at,"
                            " version, state) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                       (run["id"], run["runbook"], run["target"], run["status"], actor, run["created_at"],
                        run["created_at"], json.dumps(state)))
            self._audit(cur, run["id"], actor, "start", {"runbook": run["runbook"], "target": run["target"],
                                                         "params": state.get("params")})

    def commit_step(self, run_id: str, version: int, status: str, state: dict, step: dict | None,
                    actor: str, event: str | None, detail: dict | None = None) -> int:
        """Store a finished step (or a claim) and the run's new state atomically, conditional on the
        version the caller read: 409 if another request, worker or host changed the run since."""
        with self.backend.tx() as cur:
            self._exec(cur, "UPDATE runs SET status = ?, state = ?, updated_at = ?, version = version + 1"
                            " WHERE id = ? AND version = ?",
                       (status, json.dumps(state), now(), run_id, version))
            if cur.rowcount != 1:
                raise RunStateError("the run was advanced by another request; reload it")
            if step is not None:
                self._exec(cur, "INSERT INTO run_steps (run_id, seq, data) VALUES (?, ?, ?)",
                           (run_id, step["seq"], json.dumps(step)))
            if event is not None:  # a diagnostic's claim is not an audit event: its finished step is
                self._audit(cur, run_id, actor, event, detail or {})
        return version + 1

    def load_run(self, run_id: str) -> dict | None:
        """Header, state and steps of a run, or None."""
        with self.backend.tx() as cur:
            row = self._exec(cur, "SELECT id, runbook, target, status, created_by, created_at, updated_at, version,"
                                  " state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            steps = self._exec(cur, "SELECT data FROM run_steps WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        keys = ("id", "runbook", "target", "status", "created_by", "created_at", "updated_at", "version")
        run = dict(zip(keys, row[:8]))
        run["state"] = json.loads(row[8])
        run["steps"] = [json.loads(s[0]) for s in steps]
        return run

    def recent(self, limit: int = 50, targets: list[str] | None = None) -> list[dict]:
        """Newest runs first, headers only; only runs on `targets` when given."""
        if targets is not None and not targets:
            return []
        where = f" WHERE target IN ({', '.join('?' * len(targets))})" if targets else ""
        with self.backend.tx() as cur:
            rows = self._exec(cur, "SELECT id, runbook, target, status, created_by, created_at, updated_at, state"
                                   f" FROM runs{where} ORDER BY created_at DESC LIMIT ?",
                              (*(targets or ()), limit)).fetchall()
        out = []
        for r in rows:
            state = json.loads(r[7])
            out.append({"id": r[0], "runbook": r[1], "target": r[2], "status": r[3], "created_by": r[4],
                        "created_at": r[5], "updated_at": r[6], "verdict": (state.get("conclusion") or {}).get("verdict"),
                        "conclusion_outcome": (state.get("conclusion") or {}).get("outcome")})
        return out

    # --- shared limits ---------------------------------------------------------------------------
    # Counted here, not in a process, so they hold across gunicorn workers and hosts. Expiry uses each
    # host's clock (time.time()); hosts are expected to run NTP.
    def take_slot(self, target: str, cap: int, holder: str, lease_s: float) -> int | None:
        """One of the `cap` connection slots of `target`, leased to `holder`; None when all are held.
        A slot whose lease ran out (its process died) is free again."""
        t = time.time()
        with self.backend.tx() as cur:
            self._exec(cur, "DELETE FROM target_slots WHERE target = ? AND expires_at < ?", (target, t))
            for slot in range(cap):
                n = self._exec(cur, "INSERT INTO target_slots (target, slot, holder, expires_at) VALUES (?, ?, ?, ?)"
                                    " ON CONFLICT DO NOTHING", (target, slot, holder, t + lease_s)).rowcount
                if n == 1:
                    return slot
        return None

    def renew_slot(self, target: str, slot: int, holder: str, lease_s: float) -> bool:
        """Extend a held slot's lease; False if it lapsed and was taken by someone else."""
        with self.backend.tx() as cur:
            n = self._exec(cur, "UPDATE target_slots SET expires_at = ? WHERE target = ? AND slot = ? AND holder = ?",
                           (time.time() + lease_s, target, slot, holder)).rowcount
        return n == 1

    def was_recorded(self, key: str) -> bool:
        """Whether `key` is recorded and not expired."""
        with self.backend.tx() as cur:
            return self._exec(cur, "SELECT 1 FROM chat_replays WHERE key = ? AND expires_at >= ?",
                              (key, time.time())).fetchone() is not None

    def give_slot(self, target: str, slot: int, holder: str) -> None:
        with self.backend.tx() as cur:
            self._exec(cur, "DELETE FROM target_slots WHERE target = ? AND slot = ? AND holder = ?", (target, slot, holder))

    def slots_held(self, target: str) -> int:
        with self.backend.tx() as cur:
            return self._exec(cur, "SELECT count(*) FROM target_slots WHERE target = ? AND expires_at >= ?",
                              (target, time.time())).fetchone()[0]

    def rate_hit(self, key: str, count: int, window: float) -> float | None:
        """Count one request for `key`; None if within `count` per `window` seconds, else seconds to wait.
        A sliding window estimated from two fixed ones, so a burst at a window's edge is not doubled."""
        t = time.time()
        start = int(t // window)
        with self.backend.tx() as cur:
            rows = dict(self._exec(cur, "SELECT window_start, hits FROM rate_hits WHERE key = ? AND window_start >= ?",
                                   (key, start - 1)).fetchall())
            weight = 1 - (t - start * window) / window
            used = rows.get(start, 0) + rows.get(start - 1, 0) * weight
            if used + 1 > count:
                return max(0.5, window * weight)  # at the latest, the current window's end
            self._exec(cur, "INSERT INTO rate_hits (key, window_start, hits) VALUES (?, ?, 1) ON CONFLICT (key, window_start)"
                            " DO UPDATE SET hits = rate_hits.hits + 1", (key, start))
            if start % 16 == 0:  # now and then, forget old windows
                self._exec(cur, "DELETE FROM rate_hits WHERE window_start < ? AND key = ?", (start - 1, key))
        return None

    # --- audit -----------------------------------------------------------------------------------
    def _audit(self, cur, run_id, actor, event, detail) -> None:
        self._exec(cur, "INSERT INTO audit (run_id, at, actor, event, detail) VALUES (?, ?, ?, ?, ?)",
                   (run_id, now(), actor, event, json.dumps(detail)))

    def audit(self, run_id: str | None, actor: str, event: str, detail: dict) -> None:
        """Record an event that is not a step (e.g. a refused confirmation, a token change)."""
        with self.backend.tx() as cur:
            self._audit(cur, run_id, actor, event, detail)

    def audit_trail(self, run_id: str) -> list[dict]:
        """Every audit line of a run, oldest first."""
        with self.backend.tx() as cur:
            rows = self._exec(cur, "SELECT at, actor, event, detail FROM audit WHERE run_id = ? ORDER BY id",
                              (run_id,)).fetchall()
        return [{"at": r[0], "actor": r[1], "event": r[2], "detail": json.loads(r[3])} for r in rows]

    # --- tokens ----------------------------------------------------------------------------------
    def add_token(self, token_id: str, name: str, role: str, digest: str) -> None:
        with self.backend.tx() as cur:
            self._exec(cur, "INSERT INTO tokens (id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                       (token_id, name, role, digest, now()))
            self._audit(cur, None, "cli", "token-create", {"id": token_id, "name": name, "role": role})

    def token_by_hash(self, digest: str) -> dict | None:
        with self.backend.tx() as cur:
            row = self._exec(cur, "SELECT id, name, role, revoked_at FROM tokens WHERE hash = ?", (digest,)).fetchone()
        if row is None or row[3] is not None:
            return None
        return {"id": row[0], "name": row[1], "role": row[2]}

    def token_exists(self, token_id: str) -> bool:
        with self.backend.tx() as cur:
            row = self._exec(cur, "SELECT 1 FROM tokens WHERE id = ? AND revoked_at IS NULL", (token_id,)).fetchone()
        return row is not None

    def revoke_token(self, key: str) -> int:
        """Revoke tokens by id or name; returns how many."""
        with self.backend.tx() as cur:
            n = self._exec(cur, "UPDATE tokens SET revoked_at = ? WHERE (id = ? OR name = ?) AND revoked_at IS NULL",
                           (now(), key, key)).rowcount
            self._audit(cur, None, "cli", "token-revoke", {"key": key, "count": n})
        return n

    def tokens(self) -> list[dict]:
        with self.backend.tx() as cur:
            rows = self._exec(cur, "SELECT id, name, role, created_at, revoked_at FROM tokens ORDER BY created_at").fetchall()
        return [dict(zip(("id", "name", "role", "created_at", "revoked_at"), r)) for r in rows]

    def has_active_tokens(self) -> bool:
        with self.backend.tx() as cur:
            return self._exec(cur, "SELECT 1 FROM tokens WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None

    # --- one-time records: chat replays, ended sessions --------------------------------------------
    def record_once(self, key: str, expires_at: float) -> bool:
        """Record `key` until `expires_at` (epoch seconds); False if it is already recorded. One
        transaction, and the primary key decides between concurrent callers on every worker and host."""
        with self.backend.tx() as cur:
            self._exec(cur, "DELETE FROM chat_replays WHERE expires_at < ?", (time.time(),))
            n = self._exec(cur, "INSERT INTO chat_replays (key, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (key, expires_at)).rowcount
        return n == 1
