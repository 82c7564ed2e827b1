"""Owns psycopg for diagnosed targets: capped connections, read-only steps with timeouts, actions.

A hand-written pool rather than psycopg_pool: when a target refuses connections, psycopg_pool retries
in the background and the caller only sees PoolTimeout, losing the server's message that the engine
classifies ("sorry, too many clients already" vs "remaining connection slots are reserved ...").
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import math
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from kb.runbooks import sqlguard
from kb.runbooks.targets import Target

APP_NAME = "kb"


class Busy(Exception):
    """Every connection this process may open to the target is in use."""

    def __init__(self, target: str, cap: int, waited: float, shared: bool = False):
        where = " (counted across every kb worker and host sharing this run store)" if shared else ""
        super().__init__(f"all {cap} connection(s) kb may open to target {target!r} are in use by other runs"
                         f"{where} (waited {waited:.1f} s)")


class Unanswered(Exception):
    """The target stopped answering mid-step; kb cut the connection at the step's deadline."""

    def __init__(self, target: str, seconds: float):
        super().__init__(f"target {target!r} sent nothing for {seconds:.1f} s (the statement timeout plus the "
                         "connect timeout); kb closed the connection")


class NoReservedConnection(Exception):
    """A step asked for the reserved-slot connection and the target defines none."""

    def __init__(self, target: str):
        super().__init__(f"target {target!r} has no reserved_dsn configured (a role that may use reserved slots)")


@dataclass
class Timeouts:
    """Limits applied to every statement of a step."""

    connect_s: int = 3
    statement_ms: int = 5000
    lock_ms: int = 1000
    idle_ms: int = 10000


@dataclass
class StepResult:
    """What a statement returned, ready to store as JSON."""

    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)  # the first `keep` rows, JSON-safe (conditions see these)
    row_count: int = 0  # every row the statement returned
    server_version: int | None = None
    duration_ms: float = 0.0
    status: str = ""


def jsonable(value):
    """A database value as JSON-safe data (numbers stay numbers for conditions)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (uuid.UUID, ipaddress._BaseAddress, ipaddress._BaseNetwork)):
        return str(value)
    return str(value)


def _has_news(conn: psycopg.Connection) -> bool:
    """An idle connection has nothing to say; if its socket is readable, the server ended it (e.g.
    `pg_terminate_backend` sent FATAL 57P01 and closed), and that is not the next step's failure."""
    import select

    try:
        return bool(select.select([conn.pgconn.socket], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True


def _cut_connection(conn: psycopg.Connection, cut: threading.Event) -> None:
    """Shut the connection's socket down so the thread blocked reading it gets an error now."""
    import os
    import socket

    cut.set()
    try:
        s = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.Error):
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.close()


class TargetPool:
    """At most `cap` connections to one target; idle ones closed after a while.

    Without a shared store the cap holds for this process. With one (the run store), every open
    connection also holds a leased slot there, so the cap holds across gunicorn workers and hosts; a
    process that dies without giving its slots back loses them when their lease runs out."""

    def __init__(self, target: Target, timeouts: Timeouts, idle_seconds: float, slots=None):
        self.target = target
        self.timeouts = timeouts
        self.idle_seconds = idle_seconds
        self.slots = slots
        self._sem = threading.BoundedSemaphore(target.cap)
        self._idle: list[tuple[psycopg.Connection, float]] = []
        self._held: dict[int, tuple[int, str]] = {}  # id(conn) -> (slot, holder) in the shared store
        self._until: dict[int, float] = {}  # id(conn) -> when its slot's lease ends (time.time())
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def _lease(self, statement_ms: int | None) -> float:
        t = self.timeouts
        return (statement_ms or t.statement_ms) / 1000 + 2 * t.connect_s + self.idle_seconds + 30

    def _connect(self, reserved: bool) -> psycopg.Connection:
        t = self.target
        dsn = t.reserved_dsn if reserved else t.dsn
        if reserved and not dsn:
            raise NoReservedConnection(t.name)
        kwargs = {"connect_timeout": max(2, self.timeouts.connect_s), "application_name": APP_NAME,
                  # a peer that vanishes (host down, network cut) is noticed by the kernel: keepalives
                  # for idle pooled connections, tcp_user_timeout for data the peer never acknowledges
                  "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3,
                  "tcp_user_timeout": int(self.timeouts.statement_ms + self.timeouts.connect_s * 1000)}
        if t.kind == "pgbouncer":
            return psycopg.connect(dsn, autocommit=True, cursor_factory=psycopg.ClientCursor, **kwargs)
        conn = psycopg.connect(dsn, autocommit=False, prepare_threshold=None, **kwargs)
        conn.read_only = True
        return conn

    def _take_shared(self, start: float, busy_timeout: float, lease: float) -> tuple[int, str, float] | None:
        if self.slots is None:
            return None
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        delay = 0.02
        while True:
            slot = self.slots.take_slot(self.target.name, self.target.cap, holder, 2 * lease)
            if slot is not None:
                return slot, holder, time.time() + 2 * lease
            if time.monotonic() - start + delay > busy_timeout:
                raise Busy(self.target.name, self.target.cap, time.monotonic() - start, shared=True)
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    @contextmanager
    def connection(self, busy_timeout: float, reserved: bool = False, statement_ms: int | None = None):
        """A connection of this target's cap; raises Busy after `busy_timeout` seconds of waiting."""
        start = time.monotonic()
        if not self._sem.acquire(timeout=busy_timeout):
            raise Busy(self.target.name, self.target.cap, time.monotonic() - start)
        conn = None
        try:
            lease = self._lease(statement_ms)
            conn = None if reserved else self._take(lease)
            if conn is None:
                held = self._take_shared(start, busy_timeout, lease)
                try:
                    conn = self._connect(reserved)
                except BaseException:
                    if held:
                        self.slots.give_slot(self.target.name, *held[:2])
                    raise
                if held:
                    self._held[id(conn)] = held[:2]
                    self._until[id(conn)] = held[2]
            yield conn
        except BaseException:
            if conn is not None:
                self._close(conn)
                conn = None
            raise
        finally:
            if conn is not None:
                self._give_back(conn, keep=not reserved)
            self._sem.release()

    def _close(self, conn: psycopg.Connection) -> None:
        conn.close()
        self._until.pop(id(conn), None)
        held = self._held.pop(id(conn), None)
        if held and self.slots is not None:
            try:
                self.slots.give_slot(self.target.name, *held)
            except Exception:  # noqa: BLE001 - the lease runs out by itself if the store is unreachable
                pass

    def _take(self, lease: float):
        with self._lock:
            found = None
            while self._idle and found is None:
                conn, _ = self._idle.pop()
                if (not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                        and not _has_news(conn)):
                    found = conn
                else:
                    self._close(conn)
        held = self._held.get(id(found)) if found is not None else None
        # renew only when less than the lease is left: a step needs at most one lease of time
        if held is not None and self.slots is not None and self._until.get(id(found), 0) - time.time() < lease:
            if not self.slots.renew_slot(self.target.name, *held, 2 * lease):
                self._close(found)  # our lease lapsed and the slot went to someone else
                return None
            self._until[id(found)] = time.time() + 2 * lease
        return found

    def _give_back(self, conn: psycopg.Connection, keep: bool) -> None:
        healthy = not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if not (keep and healthy and self.idle_seconds > 0):
            self._close(conn)
            return
        with self._lock:
            self._idle.append((conn, time.monotonic()))
            if self._timer is None:
                self._timer = threading.Timer(self.idle_seconds, self._sweep)
                self._timer.daemon = True
                self._timer.start()

    def _sweep(self) -> None:
        with self._lock:
            self._timer = None
            now = time.monotonic()
            keep = []
            for conn, since in self._idle:
                if now - since >= self.idle_seconds - 0.01:
                    self._close(conn)
                else:
                    keep.append((conn, since))
            self._idle = keep
            if keep:
                self._timer = threading.Timer(self.idle_seconds, self._sweep)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """Close every idle connection now."""
        with self._lock:
            for conn, _ in self._idle:
                self._close(conn)
            self._idle = []


class Executor:
    """Runs step SQL against targets through their pools."""

    def __init__(self, targets: dict[str, Target], timeouts: Timeouts, busy_timeout: float, idle_seconds: float,
                 keep_rows: int = 2000, slots=None):
        self.targets = targets
        self.keep_rows = keep_rows
        self.timeouts = timeouts
        self.busy_timeout = busy_timeout
        self.pools = {name: TargetPool(t, timeouts, idle_seconds, slots) for name, t in targets.items()}

    def pick_sql(self, step, version: int | None) -> str:
        """The step's SQL for the server's major version (variants apply from their min_version)."""
        sql = step.sql
        if version:
            major = version // 10000
            for v in sorted(step.variants, key=lambda v: v.min_version):
                if major >= v.min_version:
                    sql = v.sql
        return sql

    def run(self, target_name: str, step, params: dict, *, write: bool = False, sql: str | None = None,
            reserved: bool = False, statement_ms: int | None = None, label: str = APP_NAME) -> tuple[str, StepResult]:
        """Execute a step's SQL (read-only unless `write`); returns (SQL as run, result). Raises psycopg errors."""
        pool = self.pools[target_name]
        with pool.connection(self.busy_timeout, reserved=reserved, statement_ms=statement_ms) as conn:
            version = conn.info.server_version if pool.target.kind == "postgresql" else None
            text = sql if sql is not None else self.pick_sql(step, version)
            # checked again here, not only by `kb check`: runbooks can be edited on a running server
            sqlguard.check(text, "action" if write else "diagnostic", pool.target.kind)
            t0 = time.perf_counter()
            # a target that accepted the connection and then says nothing (a hung proxy, a frozen
            # server) acknowledges packets, so no socket option notices; a deadline of our own does
            deadline = (statement_ms or self.timeouts.statement_ms) / 1000 + self.timeouts.connect_s
            cut = threading.Event()
            watchdog = threading.Timer(deadline, _cut_connection, (conn, cut))
            watchdog.daemon = True
            watchdog.start()
            try:
                if pool.target.kind == "pgbouncer":
                    # the admin console speaks only the simple protocol; the guard allowed one SHOW
                    result = self._fetch(conn.execute(text), self.keep_rows)
                else:
                    result = self._in_transaction(conn, text, params, write, statement_ms, label)
            except psycopg.Error:
                if cut.is_set():
                    raise Unanswered(pool.target.name, deadline) from None
                raise
            finally:
                watchdog.cancel()
            result.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
            result.server_version = version
            return text, result

    def _in_transaction(self, conn, sql, params, write, statement_ms, label) -> StepResult:
        t = self.timeouts
        conn.read_only = not write
        try:
            with conn.cursor() as cur:
                # set_config(..., true) is SET LOCAL; the snapshot it takes also means a step cannot
                # switch the transaction to read-write ("must be set before any query").
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true),"
                    " set_config('idle_in_transaction_session_timeout', %s, true),"
                    " set_config('application_name', %s, true),"
                    # built-in functions and catalogs resolve before anything a user created
                    " set_config('search_path', 'pg_catalog, \"$user\", public', true)",
                    (str(statement_ms or t.statement_ms), str(t.lock_ms), str(t.idle_ms), label[:63]))
                # stream() always uses the extended protocol, so the server itself refuses a second
                # statement; rows beyond `keep_rows` are counted, not kept
                if write:
                    # an action: the guard proved it one statement; it may return no rows at all
                    result = self._fetch(cur.execute(sql, params), self.keep_rows)
                else:
                    result = StepResult()
                    for row in cur.stream(sql, params):
                        if result.row_count < self.keep_rows:
                            result.rows.append([jsonable(v) for v in row])
                        result.row_count += 1
                    result.status = cur.statusmessage or ""
                    result.columns = [d.name for d in cur.description or ()]
            if write:
                conn.commit()
            else:
                conn.rollback()
            return result
        except BaseException:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
            raise
        finally:
            if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                conn.read_only = True

    @staticmethod
    def _fetch(cur, keep: int) -> StepResult:
        if cur.description is None:
            return StepResult(row_count=max(cur.rowcount, 0), status=cur.statusmessage or "")
        cols = [d.name for d in cur.description]
        rows = [[jsonable(v) for v in row] for row in cur.fetchmany(keep)]
        count = len(rows) + sum(1 for _ in cur)
        return StepResult(cols, rows, count, status=cur.statusmessage or "")

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
