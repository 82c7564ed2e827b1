"""Scenarios of the replication-lag runbook.

A real streaming standby on loopback: `pg_basebackup -R -C -S standby1` from the scenario's primary
into a second cluster, started on its own port. The standby's replay is paused with
pg_wal_replay_pause() while the primary writes, the standby is stopped so its slot has no WAL sender,
or the pair is left to keep up. The runbook is run against the primary (the scenario's cluster) or
against the standby: then the scenario's cluster is made the standby, by a base backup of a copy of
its data directory running as the primary. Both clusters are stopped when the holder closes.

The paused standby (seen from both sides) and the recovery conflict run on every major: they cover the
SQL of both sides (13's extract() returns double precision), 13-14's statistics collector and 14's
pause states. The others read the same columns with the same SQL and run from 17 on, to keep the
all-majors run short.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from kb.scenarios import Holder, scenario
from kb.scenarios.cluster import Cluster, _as_owner
from kb.scenarios.ops import _client_program, _streaming, _until_true

RB = "replication-lag"
# small and quick: the primary keeps 16 MB of WAL at most besides what slots hold
PAIR = {"wal_level": "replica", "max_wal_senders": 5, "max_replication_slots": 5, "shared_buffers": "16MB",
        "wal_keep_size": 0, "hot_standby": "on", "wal_receiver_status_interval": "1s"}
APP = "standby1"


def _basebackup(primary: Cluster, standby: Cluster, slot: str = APP) -> None:
    """`pg_basebackup -R` of `primary` into `standby`'s (absent) data directory, creating slot `slot`;
    -R writes standby.signal and primary_conninfo (with application_name) into postgresql.auto.conf."""
    cmd = [_client_program(primary, "pg_basebackup"), "-d", primary.dsn("postgres", application_name=APP),
           "-D", str(standby.data), "-R", "-C", "-S", slot, "-X", "stream", "-c", "fast", "--no-sync",
           "--no-manifest"]
    res = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    auto_conf = standby.data / "postgresql.auto.conf"
    auto = auto_conf.read_text()
    if Path(cmd[0]).parent != Path(primary.bindir):
        # a newer pg_basebackup (18's, where the server's binaries ship none) writes every option of its own
        # libpq into primary_conninfo, and an older server's WAL receiver refuses the ones it does not know
        # (invalid connection option "sslnegotiation" before 17): keep the options every libpq knows
        keep = f"host=127.0.0.1 port={primary.port} user=postgres application_name={APP}"
        auto = re.sub(r"(?m)^primary_conninfo = .*$", lambda _: f"primary_conninfo = '{keep}'", auto)
        auto_conf.write_text(auto)
    assert "primary_conninfo" in auto and (standby.data / "standby.signal").exists(), auto


def _standby_of(c: Cluster, h: Holder) -> Cluster:
    """A new cluster streaming from `c` through slot standby1 (destroyed when the holder closes)."""
    s = Cluster(settings=c.settings, bindir=c.bindir)
    h.extra.append(s.destroy)
    _basebackup(c, s)
    s.start()
    _streaming(c, APP)
    h.standby = s
    return s


def _make_standby(c: Cluster, h: Holder) -> Cluster:
    """Turn `c` into a standby: a copy of its data directory becomes the primary, and `c`'s own data
    directory is replaced by a base backup of that primary. Returns the primary."""
    c.stop("fast")
    p = Cluster(settings=c.settings, bindir=c.bindir)
    h.extra.append(p.destroy)
    res = subprocess.run(_as_owner(["cp", "-a", str(c.data), str(p.data)]), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    p.start()
    shutil.rmtree(c.data)
    _basebackup(p, c)
    c.start()
    _streaming(p, APP)
    h.primary = p
    return p


def _write(c: Cluster, rows: int = 20000) -> str:
    """About 4 MB of WAL on the primary; returns the WAL insert position after it (with synchronous_commit
    off the commit record may not be written yet, so pg_current_wal_lsn() could stop short of it)."""
    c.sql("CREATE TABLE IF NOT EXISTS lag_fill (id int, pad text)")
    c.sql("INSERT INTO lag_fill SELECT g, repeat('x', 150) FROM generate_series(1, %s) g", (rows,))
    return c.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]


def _caught_up(primary: Cluster, standby: Cluster) -> None:
    """Wait until the primary sees the standby replayed everything written so far."""
    lsn = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    _until_true(standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", f"standby replay up to {lsn}", params=(lsn,))
    _until_true(primary, "SELECT coalesce(bool_and(replay_lsn >= %s::pg_lsn), false) FROM pg_stat_replication "
                "WHERE application_name = %s", f"primary sees replay up to {lsn}", params=(lsn, APP))


def _pause_and_write(primary: Cluster, standby: Cluster) -> None:
    """Pause replay on the standby, write on the primary and wait until the standby has flushed it all."""
    standby.sql("SELECT pg_wal_replay_pause()")
    _until_true(standby, "SELECT pg_is_wal_replay_paused()", "replay paused")
    lsn = _write(primary)
    _until_true(primary, "SELECT coalesce(bool_and(flush_lsn >= %s::pg_lsn AND replay_lsn < %s::pg_lsn), false) "
                "FROM pg_stat_replication WHERE application_name = %s", f"standby flushed up to {lsn}, not replayed",
                params=(lsn, lsn, APP))
    _until_true(standby, "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn AND pg_last_wal_replay_lsn() < %s::pg_lsn",
                "received, not replayed", params=(lsn, lsn))


# --- against the primary ------------------------------------------------------------------------

HELD = ["where", "senders", "replay-held"]
SENDERS_HIDDEN = ["where", "senders", "cannot-see-senders"]


@scenario("replag-paused-primary", RB,
          "Replay is paused on standby `standby1` (pg_wal_replay_pause()) while the primary writes ~4 MB: the "
          "primary sees it flushed but not replayed. A role without pg_monitor sees its WAL sender without positions.",
          settings=PAIR, params={"lag_mb": 1}, expect_path=HELD,
          expect_verdict="Standby standby1 has flushed the WAL this primary sent but has not replayed it: standby1 (pid",
          expect_links=["/errors/conflict-with-recovery#fix-allow-replay-to-wait-longer"],
          roles={"postgres": HELD, "plain": SENDERS_HIDDEN})
def _paused_primary(c: Cluster, h: Holder) -> None:
    s = _standby_of(c, h)
    _pause_and_write(c, s)


GONE = ["where", "senders", "slot-without-standby"]


@scenario("replag-standby-gone", RB,
          "Standby `standby1` was stopped: the primary has no WAL sender for it while its slot `standby1` retains "
          "the ~4 MB written since. Everyone may read pg_replication_slots.",
          min_version=17,
          settings=PAIR, params={"lag_mb": 1}, expect_path=GONE,
          expect_verdict="1 physical slot(s) have no WAL sender",
          expect_links=["/errors/could-not-connect-to-primary-server#fix-see-the-receiver-s-state-on-the-standby"],
          roles={"postgres": GONE, "plain": GONE})
def _standby_gone(c: Cluster, h: Holder) -> None:
    s = _standby_of(c, h)
    s.stop("fast")
    _until_true(c, "SELECT count(*) = 0 FROM pg_stat_replication", "no WAL sender left")
    _write(c)
    _until_true(c, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) > 1048576 FROM pg_replication_slots "
                "WHERE slot_name = %s", "slot retains WAL", params=(APP,))


PRIMARY_OK = ["where", "senders", "primary-healthy"]


@scenario("replag-healthy-primary", RB,
          "Standby `standby1` streams and has replayed everything the primary wrote. A role without pg_monitor "
          "cannot see its WAL sender's positions.",
          min_version=17,
          settings=PAIR, params={"lag_mb": 1}, expect_path=PRIMARY_OK, expect_verdict="1 standby(s) streaming",
          roles={"postgres": PRIMARY_OK, "plain": SENDERS_HIDDEN})
def _healthy_primary(c: Cluster, h: Holder) -> None:
    s = _standby_of(c, h)
    _write(c, 1000)
    _caught_up(c, s)


# --- against the standby ------------------------------------------------------------------------

PAUSED = ["where", "standby", "replay-paused"]


@scenario("replag-paused-standby", RB,
          "The target is a standby whose replay is paused (pg_wal_replay_pause()) while its primary wrote ~4 MB: "
          "received, not replayed. The pause and the gap are visible to every role.",
          settings=PAIR, params={"lag_mb": 1}, expect_path=PAUSED, expect_verdict="Replay on this standby is paused",
          roles={"postgres": PAUSED, "plain": PAUSED})
def _paused_standby(c: Cluster, h: Holder) -> None:
    p = _make_standby(c, h)
    _pause_and_write(p, c)


STANDBY_OK = ["where", "standby", "standby-healthy"]


@scenario("replag-healthy-standby", RB,
          "The target is a standby streaming from its primary through slot `standby1`, everything replayed. A role "
          "without pg_monitor cannot see the WAL receiver's state.",
          min_version=17,
          settings=PAIR, params={"lag_mb": 1}, expect_path=STANDBY_OK, expect_verdict="Streaming from 127.0.0.1:",
          roles={"postgres": STANDBY_OK, "plain": ["where", "standby", "cannot-see-receiver"]})
def _healthy_standby(c: Cluster, h: Holder) -> None:
    p = _make_standby(c, h)
    _write(p, 1000)
    _caught_up(p, c)


DOWN = ["where", "standby", "receiver-down"]


@scenario("replag-primary-down", RB,
          "The target is a standby whose primary was stopped: its WAL receiver is not running (retries wait "
          "wal_retrieve_retry_interval = 1h). Visible to every role.",
          min_version=17,
          settings={**PAIR, "wal_retrieve_retry_interval": "1h"}, params={"lag_mb": 1}, expect_path=DOWN,
          expect_verdict="The WAL receiver is not running",
          expect_links=["/errors/could-not-connect-to-primary-server#fix-see-the-receiver-s-state-on-the-standby"],
          roles={"postgres": DOWN, "plain": DOWN})
def _primary_down(c: Cluster, h: Holder) -> None:
    p = _make_standby(c, h)
    p.stop("fast")
    _until_true(c, "SELECT count(*) = 0 FROM pg_stat_wal_receiver", "the WAL receiver gone")


CONFLICTS = ["where", "standby", "conflicts-seen"]


@scenario("replag-conflicts-standby", RB,
          "The target is a standby (max_standby_streaming_delay = 0, hot_standby_feedback off) where a "
          "REPEATABLE READ transaction held a snapshot while the primary deleted and vacuumed the rows it could "
          "see: replay ended that session (a snapshot conflict) and caught up. pg_stat_database_conflicts is "
          "readable by every role.",
          settings={**PAIR, "max_standby_streaming_delay": 0}, params={"lag_mb": 1}, expect_path=CONFLICTS,
          expect_verdict="on this standby 1 time(s) since the statistics were reset: postgres: 1 (snapshot 1,",
          expect_links=["/errors/conflict-with-recovery#fix-snapshot-conflicts-turn-on-hot-standby-feedback"],
          roles={"postgres": CONFLICTS, "plain": CONFLICTS})
def _conflicts_standby(c: Cluster, h: Holder) -> None:
    p = _make_standby(c, h)
    p.sql("CREATE TABLE conflict_rows AS SELECT g AS id FROM generate_series(1, 1000) g")
    p.sql("GRANT SELECT ON conflict_rows TO app")
    _caught_up(p, c)
    reader = h.connect(user="app", app="standby-report", autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    reader.execute("SELECT count(*) FROM conflict_rows").fetchone()  # the snapshot stays while idle in transaction
    p.sql("DELETE FROM conflict_rows")
    p.sql("VACUUM conflict_rows")
    _caught_up(p, c)
    _until_true(c, "SELECT coalesce(sum(confl_snapshot), 0) > 0 FROM pg_stat_database_conflicts",
                "a snapshot conflict counted")
