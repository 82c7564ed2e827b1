"""Scenarios of the pgbouncer-pool-saturation, auth-failures and replication-slot-wal runbooks.

pgbouncer-*: a real pgbouncer (default_pool_size 2) in front of the cluster, saturated by clients
that hold transactions or run slow queries through it while another client queues.
auth-*: roles and pg_hba.conf rules in the states that make a login fail.
slots-*: replication slots that retain, lose or use up WAL and slots, their consumers (pg_receivewal and
pg_recvlogical run as real clients, some stopped with SIGSTOP), and a standby made from a clean copy of
the cluster's data directory streaming from that copy as its primary.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg

from kb.scenarios.cluster import Cluster, PgBouncer, _as_owner, chown_to_postgres
from kb.scenarios import Holder, scenario

# --- pgbouncer ----------------------------------------------------------------------------------

PGB = "pgbouncer-pool-saturation"


def _bouncer_target(c: Cluster, h: Holder) -> dict:
    return {"dsn": h.bouncer.admin_dsn("postgres"), "kind": "pgbouncer", "description": "sandbox: pgbouncer console"}


def _bouncer(c: Cluster, h: Holder, settings: dict | None = None, databases: dict | None = None) -> PgBouncer:
    b = PgBouncer(c, settings=settings, databases=databases).start()
    h.extra.append(b.stop)
    h.bouncer = b
    return b


def _through(h: Holder, b: PgBouncer, autocommit: bool = True) -> psycopg.Connection:
    """A client connection through pgbouncer, closed with the holder."""
    conn = psycopg.connect(b.dsn("app"), autocommit=autocommit, prepare_threshold=None, connect_timeout=5)
    h.conns.append(conn)
    return conn


def _in_background(b: PgBouncer, sql: str) -> None:
    """A client that runs `sql` through pgbouncer in a thread (it ends when pgbouncer stops)."""

    def run():
        try:
            with psycopg.connect(b.dsn("app"), autocommit=True, prepare_threshold=None, connect_timeout=10) as conn:
                conn.execute(sql)
        except psycopg.Error:
            pass

    threading.Thread(target=run, daemon=True).start()


def _pool(b: PgBouncer, database: str = "postgres") -> dict:
    with psycopg.connect(b.admin_dsn("postgres"), autocommit=True, cursor_factory=psycopg.ClientCursor) as adm:
        cur = adm.execute("SHOW POOLS")
        cols = [d.name for d in cur.description]
        for row in cur.fetchall():
            r = dict(zip(cols, row))
            if r["database"] == database and r["user"] == "app":
                return r
    return {}


def _until(b: PgBouncer, check, timeout: float = 10.0) -> None:
    """Wait until the app pool's SHOW POOLS row satisfies `check`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check(_pool(b)):
            return
        time.sleep(0.1)
    raise AssertionError(f"pgbouncer pool never reached the state: {_pool(b)}")


def _queued(p: dict) -> bool:
    return p.get("cl_waiting", 0) >= 1


@scenario("pgbouncer-pool-too-small", PGB,
          "Two clients keep transactions open through pgbouncer (pool size 2) and a third one queues.",
          target_fn=_bouncer_target, params={"wait_seconds": 60},
          expect_path=["pools", "databases", "pool-too-small"])
def _pgb_too_small(c: Cluster, h: Holder) -> None:
    b = _bouncer(c, h)
    for _ in range(2):
        _through(h, b, autocommit=False).execute("SELECT 1")  # open transaction pins a server connection
    _in_background(b, "SELECT 1")
    _until(b, _queued)


@scenario("pgbouncer-slow-queries", PGB,
          "Two clients run 60 s queries through pgbouncer (pool size 2); a third has queued for over a second.",
          target_fn=_bouncer_target, params={"wait_seconds": 1},
          expect_path=["pools", "clients", "long-holders"])
def _pgb_slow(c: Cluster, h: Holder) -> None:
    b = _bouncer(c, h)
    for _ in range(2):
        _in_background(b, "SELECT pg_sleep(60)")
    _until(b, lambda p: p.get("sv_active", 0) >= 2)
    _in_background(b, "SELECT 1")
    _until(b, lambda p: _queued(p) and p.get("maxwait", 0) >= 1)


@scenario("pgbouncer-session-mode", PGB,
          "pool_mode = session: two idle clients keep both server connections, a third one queues.",
          target_fn=_bouncer_target, answers={"session-features": "no"},
          expect_path=["pools", "session-features", "session-switch-mode"])
def _pgb_session(c: Cluster, h: Holder) -> None:
    b = _bouncer(c, h, settings={"pool_mode": "session"})
    for _ in range(2):
        _through(h, b).execute("SELECT 1")  # idle, yet its server connection stays assigned
    _in_background(b, "SELECT 1")
    _until(b, _queued)


@scenario("pgbouncer-db-cap", PGB,
          "Database `postgres` has max_db_connections=1 on pgbouncer: one open transaction, one client queued.",
          target_fn=_bouncer_target, params={"wait_seconds": 60},
          expect_path=["pools", "databases", "db-cap"])
def _pgb_db_cap(c: Cluster, h: Holder) -> None:
    b = _bouncer(c, h, databases={"postgres": "dbname=postgres max_db_connections=1"})
    _through(h, b, autocommit=False).execute("SELECT 1")
    _in_background(b, "SELECT 1")
    _until(b, _queued)


@scenario("pgbouncer-paused", PGB, "Database `postgres` was PAUSEd on the admin console; a client queues.",
          target_fn=_bouncer_target, expect_path=["pools", "databases-stalled", "paused"])
def _pgb_paused(c: Cluster, h: Holder) -> None:
    b = _bouncer(c, h)
    with psycopg.connect(b.admin_dsn("postgres"), autocommit=True, cursor_factory=psycopg.ClientCursor) as adm:
        adm.execute("PAUSE postgres")
    _in_background(b, "SELECT 1")
    _until(b, _queued)


@scenario("pgbouncer-quiet", PGB, "Nobody queues now; the application had reported max_client_conn refusals.",
          target_fn=_bouncer_target, answers={"symptom": "max-client-conn"},
          expect_path=["pools", "symptom", "client-limit"])
def _pgb_quiet(c: Cluster, h: Holder) -> None:
    b = _bouncer(c, h)
    _through(h, b).execute("SELECT 1")


# --- authentication -----------------------------------------------------------------------------

AUTH = "auth-failures"
# kb (monitor, postgres) and the scenario helpers keep logging in over TCP whatever the test adds.
HBA_HEAD = ["local all all trust", "host all postgres,monitor 127.0.0.1/32 trust"]


def _hba(c: Cluster, lines: list[str]) -> None:
    """Replace pg_hba.conf (keeping kb's own access first) and reload."""
    (c.data / "pg_hba.conf").write_text("\n".join(HBA_HEAD + lines) + "\n")
    c.sql("SELECT pg_reload_conf()")


@scenario("auth-missing-role", AUTH, "The client logs in as `ghost`, which does not exist.",
          params={"role": "ghost"}, expect_path=["role", "role-missing"],
          roles={"postgres": ["role", "role-missing"], "plain": ["role", "role-missing"]})
def _auth_missing(c: Cluster, h: Holder) -> None:
    pass


@scenario("auth-role-case", AUTH, "Role \"Reporting\" was created quoted; the client logs in as `reporting`.",
          params={"role": "reporting"}, expect_path=["role", "role-case"],
          roles={"postgres": ["role", "role-case"], "plain": ["role", "role-case"]})
def _auth_case(c: Cluster, h: Holder) -> None:
    c.sql('CREATE ROLE "Reporting" LOGIN')


@scenario("auth-nologin", AUTH, "The client logs in as `analysts`, a group role without LOGIN.",
          params={"role": "analysts"}, expect_path=["role", "role-nologin"],
          roles={"postgres": ["role", "role-nologin"], "plain": ["role", "role-nologin"]})
def _auth_nologin(c: Cluster, h: Holder) -> None:
    c.sql("CREATE ROLE analysts NOLOGIN")


@scenario("auth-expired", AUTH, "Role `etl` has a password VALID UNTIL 2001.",
          params={"role": "etl"}, expect_path=["role", "password-expired"],
          roles={"postgres": ["role", "password-expired"], "plain": ["role", "password-expired"]})
def _auth_expired(c: Cluster, h: Holder) -> None:
    c.sql("CREATE ROLE etl LOGIN PASSWORD 'etl-secret' VALID UNTIL '2001-01-01'")


@scenario("auth-no-hba-rule", AUTH,
          "pg_hba.conf lets `app` reach only database postgres over TCP; the client asks for `shop`.",
          params={"role": "app", "database": "shop"},
          expect_path=["role", "hba", "hba-reserved", "no-hba-rule"],
          roles={"postgres": ["role", "hba", "no-hba-rule"], "plain": ["role", "cannot-connect"]})
def _auth_no_rule(c: Cluster, h: Holder) -> None:
    _hba(c, ["host postgres app 127.0.0.1/32 scram-sha-256"])


@scenario("auth-md5-under-scram", AUTH,
          "Role `legacy` has an MD5 password hash and its pg_hba.conf rule requires scram-sha-256.",
          params={"role": "legacy", "database": "shop"},
          expect_path=["role", "hba", "hba-reserved", "md5-under-scram"],
          roles={"postgres": ["role", "hba", "md5-under-scram"], "plain": ["role", "cannot-connect"]})
def _auth_md5(c: Cluster, h: Holder) -> None:
    md5 = "md5" + hashlib.md5(b"legacy-secret" + b"legacy").hexdigest()
    c.sql(f"CREATE ROLE legacy LOGIN PASSWORD '{md5}'")
    _hba(c, ["host all all 127.0.0.1/32 scram-sha-256"])


@scenario("auth-peer", AUTH, "`app` logs in over the Unix socket, where pg_hba.conf asks for peer authentication.",
          params={"role": "app", "connection": "local"},
          expect_path=["role", "hba", "hba-reserved", "peer-mismatch"],
          roles={"postgres": ["role", "hba", "peer-mismatch"], "plain": ["role", "hba", "hba-reserved", "peer-mismatch"]})
def _auth_peer(c: Cluster, h: Holder) -> None:
    (c.data / "pg_hba.conf").write_text("local all postgres trust\nlocal all all peer\n"
                                        "host all all 127.0.0.1/32 trust\n")
    c.sql("SELECT pg_reload_conf()")


@scenario("auth-no-password", AUTH, "`app` has no password; its rule for database shop asks for scram-sha-256.",
          params={"role": "app", "database": "shop"},
          expect_path=["role", "hba", "hba-reserved", "no-password"],
          roles={"postgres": ["role", "hba", "no-password"], "plain": ["role", "cannot-connect"]})
def _auth_no_password(c: Cluster, h: Holder) -> None:
    _hba(c, ["host shop app 127.0.0.0/8 scram-sha-256"])


@scenario("auth-no-superuser", AUTH,
          "kb's role (pg_monitor) may not read pg_hba_file_rules and the target has no reserved connection.",
          params={"role": "app"}, reserved=False,
          expect_path=["role", "hba", "hba-reserved", "need-superuser"],
          roles={"postgres": ["role", "hba", "looks-fine"], "plain": ["role", "hba", "hba-reserved", "need-superuser"]})
def _auth_no_superuser(c: Cluster, h: Holder) -> None:
    pass


# --- replication slots --------------------------------------------------------------------------

SLOTS = "replication-slot-wal"
WAL = {"wal_level": "replica", "max_wal_senders": 5, "max_replication_slots": 5}
LOGICAL = {**WAL, "wal_level": "logical"}
CAPPED = {**WAL, "max_slot_wal_keep_size": "1MB", "wal_keep_size": 0}


def _generate_wal(c: Cluster, switches: int = 3) -> None:
    """Write a little and switch WAL segments: each switch moves the WAL position by a 16 MB segment."""
    c.sql("CREATE TABLE IF NOT EXISTS wal_filler (id int, pad text)")
    for _ in range(switches):
        c.sql("INSERT INTO wal_filler SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
        c.sql("SELECT pg_switch_wal()")


def _until_true(c: Cluster, sql: str, what: str, timeout: float = 15.0, params=None) -> None:
    """Poll a boolean query until it holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if c.sql(sql, params)[0][0]:
            return
        time.sleep(0.02)
    raise AssertionError(f"never reached: {what}")


def _slot_names(c: Cluster) -> list[str]:
    return [r[0] for r in c.sql("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def _client_program(c: Cluster, name: str) -> str:
    """A PostgreSQL client program for this cluster's server: its own binaries' when they ship it, else
    the newest at hand (18's speaks the replication protocol of every older major)."""
    from kb.scenarios.binaries import embedded_bindir
    from kb.scenarios.cluster import find_bindir

    for d in (c.bindir, embedded_bindir(), find_bindir()):
        if d is not None and (Path(d) / name).exists():
            return str(Path(d) / name)
    raise AssertionError(f"no {name} found")


def _client(c: Cluster, h: Holder, name: str, *args: str, app: str) -> subprocess.Popen:
    """Run a replication client (pg_receivewal, pg_recvlogical) against the cluster until the holder
    closes; it may be stopped with SIGSTOP meanwhile, so it is killed, not asked to stop."""
    proc = subprocess.Popen([_client_program(c, name), "-d", c.dsn("postgres", application_name=app), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop():
        proc.kill()
        proc.wait(10)

    h.extra.append(stop)
    return proc


def _streaming(c: Cluster, app: str) -> None:
    _until_true(c, "SELECT count(*) > 0 FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming'",
                f"{app} streaming", params=(app,))


def _become_standby(c: Cluster, h: Holder, settings: dict | None = None, standby: dict | None = None) -> Cluster:
    """Make `c` a streaming standby: stop it cleanly, start a copy of its data directory as the primary
    (with `settings` on top of c's), then start `c` again in standby mode streaming from that copy
    through the physical slot `standby1`. Returns the primary (destroyed when the holder closes)."""
    c.stop("fast")
    primary = Cluster(settings={**c.settings, **(settings or {})}, bindir=c.bindir)
    h.extra.append(primary.destroy)
    res = subprocess.run(_as_owner(["cp", "-a", str(c.data), str(primary.data)]), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    primary.start()
    primary.sql("SELECT pg_create_physical_replication_slot('standby1')")
    (c.data / "standby.signal").write_text("")
    chown_to_postgres(c.data / "standby.signal")
    c.settings.update({"primary_conninfo": primary.dsn("postgres", application_name="standby1"),
                       "primary_slot_name": "standby1", **(standby or {})})
    c.start()
    _streaming(primary, "standby1")
    h.primary = primary
    return primary


def _replayed(standby: Cluster, primary: Cluster) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    lsn = primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    _until_true(standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", f"replay up to {lsn}", params=(lsn,))


def _old_standby_dropped(c: Cluster, h: Holder) -> None:
    names = _slot_names(c)
    assert "old_standby" not in names, f"slot still there: {names}"
    assert "fresh_standby" in names, f"the slot below the threshold was dropped too: {names}"


def _old_standby_kept(c: Cluster, h: Holder) -> None:
    assert "old_standby" in _slot_names(c)


KEPT = ["slots", "drop-inactive", "inactive-kept"]


@scenario("slots-inactive-retaining", SLOTS,
          "Inactive physical slot `old_standby` retains ~48 MB of WAL (`fresh_standby` almost none); kb's role has "
          "REPLICATION and drops the old one.",
          settings=WAL, params={"retained_mb": 16}, confirm={"drop-inactive": True}, verify=_old_standby_dropped,
          expect_path=["slots", "drop-inactive", "slots-dropped"], expect_verdict="1 inactive slot(s) dropped (old_standby)",
          roles={"postgres": KEPT, "plain": KEPT})
def _slots_inactive(c: Cluster, h: Holder) -> None:
    c.sql("ALTER ROLE monitor REPLICATION")
    c.sql("SELECT pg_create_physical_replication_slot('old_standby', true)")
    _generate_wal(c)
    c.sql("CHECKPOINT")  # a physical slot reserves from the last checkpoint's redo pointer
    c.sql("SELECT pg_create_physical_replication_slot('fresh_standby', true)")


@scenario("slots-drop-denied", SLOTS,
          "Inactive slot `old_standby` retains WAL; kb's role lacks REPLICATION, so the confirmed drop is refused.",
          settings=WAL, params={"retained_mb": 16}, confirm={"drop-inactive": True}, verify=_old_standby_kept,
          expect_path=["slots", "drop-inactive", "no-privilege"], roles={"postgres": KEPT, "plain": KEPT})
def _slots_denied(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('old_standby', true)")
    _generate_wal(c)


WAL_REMOVED = ["slots", "slot-wal-removed"]


@scenario("slots-lost", SLOTS,
          "max_slot_wal_keep_size = 1MB: WAL written past it and a checkpoint invalidated slot `old_standby` "
          "(wal_status lost; 17+ invalidation_reason wal_removed).",
          settings=CAPPED, params={"retained_mb": 16}, expect_path=WAL_REMOVED,
          expect_verdict="Slot(s) old_standby retained more WAL than max_slot_wal_keep_size allows",
          expect_links=["/errors/wal-segment-already-removed#fix-fill-the-gap-from-the-wal-archive"],
          roles={"postgres": WAL_REMOVED, "plain": WAL_REMOVED})
def _slots_lost(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('old_standby', true)")
    for _ in range(10):
        _generate_wal(c, switches=1)
        c.sql("CHECKPOINT")
        if c.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'old_standby'")[0][0] == "lost":
            break
    assert c.sql("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'old_standby'")[0][0] == "lost"
    if c.sql("SELECT current_setting('server_version_num')::int")[0][0] >= 170000:
        reason = c.sql("SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = 'old_standby'")[0][0]
        assert reason == "wal_removed", reason


IDLE = ["slots", "slot-idle-timeout"]


@scenario("slots-idle-timeout", SLOTS,
          "18: idle_replication_slot_timeout = 1s (the setting takes seconds): slot `parked` stayed inactive past it "
          "and a checkpoint invalidated it (idle_timeout), with WAL still on disk.",
          settings={**WAL, "idle_replication_slot_timeout": "1s"}, min_version=18, expect_path=IDLE,
          expect_verdict="(idle_timeout; idle_replication_slot_timeout is 1s)",
          roles={"postgres": IDLE, "plain": IDLE})
def _slots_idle(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('parked', true)")
    time.sleep(1.1)  # a checkpoint invalidates a slot idle for longer than the timeout (checked in whole seconds)
    for _ in range(20):
        c.sql("CHECKPOINT")
        if c.sql("SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = 'parked'")[0][0]:
            break
        time.sleep(0.1)
    reason = c.sql("SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = 'parked'")[0][0]
    assert reason == "idle_timeout", reason


AT_RISK = ["slots", "slot-at-risk"]


@scenario("slots-at-risk", SLOTS,
          "max_slot_wal_keep_size = 1MB: slot `old_standby` is past it (unreserved) and below the 1 GB threshold.",
          settings=CAPPED, expect_path=AT_RISK, expect_verdict="old_standby (",
          roles={"postgres": AT_RISK, "plain": AT_RISK})
def _slots_at_risk(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('old_standby', true)")
    _generate_wal(c)


FULL = ["slots", "slots-full"]


@scenario("slots-all-in-use", SLOTS, "max_replication_slots = 2 and two (unreserved, empty) slots exist.",
          settings={**WAL, "max_replication_slots": 2}, expect_path=FULL, roles={"postgres": FULL, "plain": FULL})
def _slots_full(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('standby_a')")
    c.sql("SELECT pg_create_physical_replication_slot('standby_b')")


UNSLOTTED = ["slots", "unslotted"]


@scenario("slots-none-streaming", SLOTS,
          "No replication slot exists, but pg_receivewal (application `wal-archive`) streams WAL without one.",
          settings=WAL, expect_path=UNSLOTTED, expect_verdict="wal-archive (pid",
          expect_links=["/errors/replication-slot-does-not-exist#fix-recreate-a-physical-slot-for-a-standby"],
          roles={"postgres": UNSLOTTED, "plain": UNSLOTTED})
def _slots_none_streaming(c: Cluster, h: Holder) -> None:
    target = c.base / "receivewal"
    target.mkdir()
    _client(c, h, "pg_receivewal", "-D", str(target), "-s", "1", app="wal-archive")
    _streaming(c, "wal-archive")


STUCK = ["slots", "consumer-stuck"]


@scenario("slots-consumer-stuck", SLOTS,
          "Logical slot `cdc` is active: pg_recvlogical (application `cdc-connector`) is connected but stopped "
          "(SIGSTOP), so it confirms nothing while ~48 MB of WAL is written (wal_sender_timeout 10 min keeps its "
          "WAL sender waiting).",
          settings={**LOGICAL, "wal_sender_timeout": "10min"}, params={"lag_mb": 16}, expect_path=STUCK,
          expect_verdict="cdc (logical, consumer pid",
          roles={"postgres": STUCK, "plain": STUCK})
def _slots_consumer_stuck(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')")
    proc = _client(c, h, "pg_recvlogical", "--slot", "cdc", "--start", "-f", "/dev/null", "-s", "1", "-F", "1",
                   app="cdc-connector")
    _streaming(c, "cdc-connector")
    proc.send_signal(signal.SIGSTOP)
    _generate_wal(c)
    active = c.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'cdc'")[0][0]
    assert active, "the stopped consumer no longer holds its slot"


@scenario("slots-consumers-healthy", SLOTS,
          "pg_receivewal (application `wal-archive`) streams through its slot `archive` and confirms as it goes. "
          "A role without pg_monitor cannot see its WAL sender's state or last reply.",
          settings=WAL, expect_path=["slots", "healthy"], expect_verdict="1 slot(s), 1 active",
          roles={"postgres": ["slots", "healthy"], "plain": ["slots", "cannot-see-consumers"]})
def _slots_consumers_healthy(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('archive', true)")
    target = c.base / "receivewal"
    target.mkdir()
    _client(c, h, "pg_receivewal", "--slot", "archive", "-D", str(target), "-s", "1", app="wal-archive")
    _streaming(c, "wal-archive")
    _until_true(c, "SELECT reply_time IS NOT NULL FROM pg_stat_replication WHERE application_name = 'wal-archive'",
                "a first reply")


def _cascade_droppable(c: Cluster, h: Holder) -> None:
    """What the conclusion advises works: on the standby, outside a read-write transaction."""
    c.sql("SELECT pg_drop_replication_slot('cascade')")
    assert "cascade" not in _slot_names(c), _slot_names(c)


ON_STANDBY = ["slots", "standby-inactive"]


@scenario("slots-standby-inactive", SLOTS,
          "The target is a streaming standby (no synchronized slots) whose physical slot `cascade`, for a cascading "
          "standby that went away, retains ~48 MB of replayed WAL.",
          settings=WAL, params={"retained_mb": 16}, verify=_cascade_droppable, expect_path=ON_STANDBY,
          expect_verdict="of this standby retain 16 MB of WAL or more each: cascade (",
          roles={"postgres": ON_STANDBY, "plain": ON_STANDBY})
def _slots_standby_inactive(c: Cluster, h: Holder) -> None:
    primary = _become_standby(c, h)
    c.sql("SELECT pg_create_physical_replication_slot('cascade', true)")
    _generate_wal(primary)
    _replayed(c, primary)


SYNCED = ["slots", "synced-on-standby"]


@scenario("slots-standby-synced", SLOTS,
          "17+: the target is a standby with a copy of the primary's failover slot `cdc` (synced = true, made by "
          "pg_sync_replication_slots()); nobody consumes it on the primary, so both retain ~48 MB of WAL.",
          settings={**LOGICAL, "hot_standby_feedback": "on"}, min_version=17, params={"retained_mb": 16},
          expect_path=SYNCED, expect_verdict="cdc (",
          expect_links=["/errors/replication-slot-does-not-exist#fix-make-slots-survive-failover"],
          roles={"postgres": SYNCED, "plain": SYNCED})
def _slots_standby_synced(c: Cluster, h: Holder) -> None:
    primary = _become_standby(c, h)
    primary.sql("SELECT pg_create_logical_replication_slot('cdc', 'test_decoding', false, false, true)")
    _replayed(c, primary)
    c.sql("SELECT pg_sync_replication_slots()")
    _generate_wal(primary)
    _replayed(c, primary)
    c.sql("SELECT pg_sync_replication_slots()")
    synced = c.sql("SELECT synced FROM pg_replication_slots WHERE slot_name = 'cdc'")
    assert synced == [(True,)], synced


def _logical_slot_on_standby(c: Cluster, primary: Cluster, name: str) -> None:
    """Create a logical slot on the standby `c`: it waits for the primary to log the running transactions,
    which the primary is asked to do (pg_log_standby_snapshot, 16+) until the slot exists."""
    done = threading.Event()

    def nudge():
        while not done.is_set():
            primary.sql("SELECT pg_log_standby_snapshot()")
            time.sleep(0.05)

    t = threading.Thread(target=nudge, daemon=True)
    t.start()
    try:
        c.sql("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (name,))
    finally:
        done.set()
        t.join()


def _invalidated(c: Cluster, slot: str, reason: str) -> None:
    _until_true(c, "SELECT coalesce(bool_or(invalidation_reason = %s), false) FROM pg_replication_slots "
                   "WHERE slot_name = %s", f"{slot} invalidated ({reason})", params=(reason, slot))


WAL_LEVEL = ["slots", "slot-wal-level"]


@scenario("slots-standby-wal-level", SLOTS,
          "17+: the target is a standby with logical slot `reports_cdc`; its primary was restarted with "
          "wal_level = replica, and replaying that change invalidated the slot (wal_level_insufficient).",
          settings=LOGICAL, min_version=17, expect_path=WAL_LEVEL,
          expect_verdict="Logical slot(s) reports_cdc on this standby were invalidated because the primary's wal_level",
          roles={"postgres": WAL_LEVEL, "plain": WAL_LEVEL})
def _slots_standby_wal_level(c: Cluster, h: Holder) -> None:
    primary = _become_standby(c, h, standby={"wal_retrieve_retry_interval": "50ms"})  # reconnect at once
    _logical_slot_on_standby(c, primary, "reports_cdc")
    primary.stop("fast")
    primary.settings["wal_level"] = "replica"
    primary.start()
    _invalidated(c, "reports_cdc", "wal_level_insufficient")


ROWS_REMOVED = ["slots", "slot-rows-removed"]


@scenario("slots-standby-rows-removed", SLOTS,
          "17+: the target is a standby (hot_standby_feedback off) with logical slot `reports_cdc`; the primary "
          "dropped a table and vacuumed pg_class, removing catalog rows the slot still needed (rows_removed).",
          settings=LOGICAL, min_version=17, expect_path=ROWS_REMOVED,
          expect_verdict="Logical slot(s) reports_cdc on this standby were invalidated because the primary removed",
          expect_links=["/errors/conflict-with-recovery#fix-snapshot-conflicts-turn-on-hot-standby-feedback"],
          roles={"postgres": ROWS_REMOVED, "plain": ROWS_REMOVED})
def _slots_standby_rows_removed(c: Cluster, h: Holder) -> None:
    primary = _become_standby(c, h, standby={"hot_standby_feedback": "off"})
    _logical_slot_on_standby(c, primary, "reports_cdc")
    primary.sql("CREATE TABLE scratch (id int)")
    primary.sql("DROP TABLE scratch")
    primary.sql("VACUUM pg_class")
    _invalidated(c, "reports_cdc", "rows_removed")
