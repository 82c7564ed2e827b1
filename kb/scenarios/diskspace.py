"""Scenarios of the disk-wal-space runbook.

Each fills the disk of a real cluster the way production servers fill theirs, on a small scale: an
inactive physical slot and an inactive logical slot that hold WAL written after them (pg_switch_wal
moves the WAL position a 16 MB segment at a time), archive_mode = on with an archive_command that
always fails ('false') or with none at all, wal_keep_size keeping finished WAL, WAL written since
the last checkpoint, sorts that spilled to temporary files under a small work_mem, a table whose
deleted rows autovacuum may not remove, and a quiet cluster.
"""

from __future__ import annotations

import time

import psycopg

from kb.scenarios.cluster import Cluster
from kb.scenarios import Holder, scenario

RB = "disk-wal-space"
WAL = {"wal_level": "logical", "max_wal_senders": 5, "max_replication_slots": 5}
# archive_mode needs a restart, so the cluster starts with it; 'false' exits 1 for every segment
ARCHIVE_FAILS = {"archive_mode": "on", "archive_command": "false"}

# The runbook's SQL is the same on every major. The slots, the failing archiver, the spilled temp files
# (counted by the stats collector before 15, in shared memory from 15) and the healthy cluster run on
# every major; the states whose reading does not change between majors run from 17 only, to keep the
# all-majors run short.
SPOT_CHECK = 17


def _until(check, what: str, timeout: float = 15.0, every: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(every)
    if not check():
        raise AssertionError(f"never reached: {what}")


def _write_wal(c: Cluster, switches: int = 3) -> None:
    """Insert a little and switch WAL segments `switches` times (16 MB of WAL position each)."""
    c.sql("CREATE TABLE IF NOT EXISTS wal_filler (id int, pad text)")
    for _ in range(switches):
        c.sql("INSERT INTO wal_filler SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
        c.sql("SELECT pg_switch_wal()")


def _retained_mb(c: Cluster, slot: str) -> float:
    return c.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) / 1048576 FROM pg_replication_slots "
                 "WHERE slot_name = %s", (slot,))[0][0]


def _segments(c: Cluster) -> list[str]:
    """The WAL segment files in pg_wal, read from the data directory itself."""
    return sorted(f.name for f in (c.data / "pg_wal").iterdir() if len(f.name) == 24 and f.is_file())


def _ready(c: Cluster) -> list[str]:
    return sorted(f.name for f in (c.data / "pg_wal" / "archive_status").glob("*.ready"))


ALL = ("postgres", "plain")
SLOT = ["overview", "slot-holds-wal"]


@scenario("disk-slot-inactive", RB,
          "Inactive physical slot `old_standby` and inactive logical slot `cdc` (test_decoding) hold the ~48 MB of "
          "WAL written after them, through a CHECKPOINT; nothing consumes either.",
          settings=WAL, params={"wal_mb": 32}, expect_path=SLOT,
          expect_verdict="2 replication slot(s) hold 32 MB of WAL or more each",
          expect_links=["/errors/could-not-extend-file-no-space#fix-release-wal-held-by-replication-slots"],
          roles={r: SLOT for r in ALL})
def _slot_inactive(c: Cluster, h: Holder) -> None:
    c.sql("SELECT pg_create_physical_replication_slot('old_standby', true)")
    c.sql("SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')")
    _write_wal(c)
    c.sql("CHECKPOINT")  # the checkpoint removes no segment a slot still needs
    for slot in ("old_standby", "cdc"):
        assert _retained_mb(c, slot) >= 32, (slot, _retained_mb(c, slot))


ARCHIVE = ["overview", "archive-failing"]


def _check_ready(c: Cluster, n: int) -> None:
    """The segments the runbook counted as not archived are the ones waiting in archive_status."""
    assert len(_ready(c)) == n, _ready(c)


def _archiver(c: Cluster) -> tuple:
    return c.sql("SELECT failed_count, last_failed_wal, archived_count FROM pg_stat_archiver")[0]


@scenario("disk-archive-failing", RB,
          "archive_mode = on with archive_command = 'false': every finished segment fails to archive (failed_count "
          "grows, last_failed_wal set, nothing ever archived) and stays in pg_wal.",
          settings=ARCHIVE_FAILS, expect_path=ARCHIVE,
          expect_verdict="pg_wal keeps 2 segments of 16 MB (32 MB) that are not archived yet",
          verify=lambda c, h: _check_ready(c, 2),
          expect_links=["/errors/archive-command-failed#fix-run-the-failing-command-by-hand"],
          roles={r: ARCHIVE for r in ALL})
def _archive_failing(c: Cluster, h: Holder) -> None:
    _write_wal(c, switches=2)
    _until(lambda: (_archiver(c)[0] or 0) >= 1 and _archiver(c)[1] is not None, "an archive failure in pg_stat_archiver")
    assert _archiver(c)[2] == 0, _archiver(c)


UNCONFIGURED = ["overview", "archive-unconfigured"]


@scenario("disk-archive-unconfigured", RB,
          "archive_mode = on and no archive_command (nor archive_library): the archiver archives nothing and "
          "logs that archiving is not configured; the finished segments wait in pg_wal.",
          settings={"archive_mode": "on"}, expect_path=UNCONFIGURED,
          expect_verdict="archive_mode is on and there is no archive_command",
          roles={r: UNCONFIGURED for r in ALL}, min_version=SPOT_CHECK)
def _archive_unconfigured(c: Cluster, h: Holder) -> None:
    _write_wal(c, switches=1)


KEEP = ["overview", "wal-kept-by-settings"]


def _check_segments(c: Cluster, n: int) -> None:
    """The finished WAL the runbook says is kept is on disk: at least `n` segments besides the current one."""
    assert len(_segments(c)) >= n + 1, _segments(c)


@scenario("disk-wal-keep-size", RB,
          "wal_keep_size = 256MB, no slot and no archiving: ~80 MB of WAL written and a CHECKPOINT, which keeps all "
          "of it for standbys that might stream without a slot.",
          settings={"wal_keep_size": "256MB"}, params={"wal_mb": 64}, expect_path=KEEP,
          expect_verdict="wal_keep_size = 256MB keeps 80 MB of finished WAL",
          verify=lambda c, h: _check_segments(c, 5),
          roles={r: KEEP for r in ALL}, min_version=SPOT_CHECK)
def _wal_keep_size(c: Cluster, h: Holder) -> None:
    _write_wal(c, switches=5)
    c.sql("CHECKPOINT")


CHECKPOINT = ["overview", "wal-since-checkpoint"]


@scenario("disk-wal-since-checkpoint", RB,
          "~64 MB of WAL written since the last checkpoint (max_wal_size 1GB and checkpoint_timeout 1h: no "
          "checkpoint comes); pg_wal keeps it until the next one.",
          settings={"checkpoint_timeout": "1h"}, params={"wal_mb": 48}, expect_path=CHECKPOINT,
          expect_verdict="of WAL was written since the last checkpoint",
          roles={r: CHECKPOINT for r in ALL}, min_version=SPOT_CHECK)
def _wal_since_checkpoint(c: Cluster, h: Holder) -> None:
    c.sql("CHECKPOINT")
    _write_wal(c, switches=4)


def _temp_bytes(c: Cluster) -> int:
    return c.sql("SELECT temp_bytes FROM pg_stat_database WHERE datname = 'postgres'")[0][0]


TEMP = ["overview", "files", "temp-files-written"]


@scenario("disk-temp-spilled", RB,
          "Application `export` sorted 300,000 rows twice with work_mem = 64kB: each sort spilled about 4 MB to "
          "temporary files, which pg_stat_database counted (temp_files, temp_bytes) when they were deleted.",
          params={"temp_mb": 4}, expect_path=TEMP, expect_verdict="Database postgres wrote",
          expect_links=["/errors/temp-file-limit-exceeded#fix-find-the-statements-that-spill"],
          roles={r: TEMP for r in ALL})
def _temp_spilled(c: Cluster, h: Holder) -> None:
    with psycopg.connect(c.dsn("app"), autocommit=True, application_name="export", connect_timeout=5) as conn:
        conn.execute("SET work_mem = '64kB'")
        for _ in range(2):
            conn.execute("SELECT sum(n) FROM (SELECT g AS n FROM generate_series(1, 300000) g"
                         " ORDER BY g DESC OFFSET 1) AS sorted")
    _until(lambda: _temp_bytes(c) >= 4 * 1048576, "the temp files in pg_stat_database")


BLOAT = ["overview", "files", "bloat"]


def _dead(c: Cluster) -> int:
    rows = c.sql("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'public.events'::regclass")
    return rows[0][0] if rows else 0


@scenario("disk-bloat", RB,
          "Table `events` (autovacuum_enabled = false): 200,000 rows inserted, then 120,000 deleted, so 60% of its "
          "tuples are dead and take its space.",
          params={"bloat_min_mb": 1}, expect_path=BLOAT,
          expect_verdict="public.events (",
          roles={r: BLOAT for r in ALL}, min_version=SPOT_CHECK)
def _bloat(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.events (id int, payload text) WITH (autovacuum_enabled = false)")
    c.sql("INSERT INTO public.events SELECT g, repeat('e', 40) FROM generate_series(1, 200000) g")
    c.sql("DELETE FROM public.events WHERE id <= 120000")
    _until(lambda: _dead(c) >= 120000, "the dead tuples in pg_stat_user_tables")


@scenario("disk-healthy", RB,
          "A quiet cluster: no slot, no archiving, a small table, no spills. A role without pg_monitor cannot see "
          "the other sessions (one of them could be spilling now).",
          expect_path=["overview", "files", "healthy"],
          expect_verdict="The largest database is",
          roles={"postgres": ["overview", "files", "healthy"], "plain": ["overview", "files", "cannot-see-files"]})
def _healthy(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.customers (id int PRIMARY KEY, name text)")
    c.sql("INSERT INTO public.customers SELECT g, 'c' || g FROM generate_series(1, 1000) g")
    c.sql("GRANT SELECT ON public.customers TO app")
    h.connect(user="app", app="web").execute("SELECT count(*) FROM public.customers")


LOCKED = ["overview", "files", "files-locked"]


@scenario("disk-table-rewrite", RB,
          "Application `migrate` holds ACCESS EXCLUSIVE on table `events` in an open transaction, as a VACUUM FULL "
          "or a rewriting ALTER TABLE would: sizing the relations waits for it and gives up at lock_timeout.",
          expect_path=LOCKED, roles={r: LOCKED for r in ALL}, min_version=SPOT_CHECK)
def _table_rewrite(c: Cluster, h: Holder) -> None:
    c.sql("CREATE TABLE public.events (id int)")
    c.sql("GRANT ALL ON public.events TO app")
    migrate = h.connect(user="app", app="migrate", autocommit=False)
    migrate.execute("LOCK TABLE public.events IN ACCESS EXCLUSIVE MODE")
