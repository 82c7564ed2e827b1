"""`kb triage` beside pgBadger on generated stderr logs: MB/s, the ratio, linearity and memory.

Logs are generated once into --dir (log_line_prefix '%m [%p] %u@%d ', 2% of the messages errors or fatals
with their DETAIL and STATEMENT lines, the rest statement durations, connections, disconnections and
checkpoints; from 60% of the way on a FATAL that never stops). kb is timed in this process (the
triage alone, wall and CPU: one core) and as the `kb triage --json` command (start-up included, peak
resident memory); pgBadger (Debian's package, installed with apt-get when missing) builds its full text
report from the same file on one core (-j 1).

    python bench/triage.py [--sizes 100,200,400] [--pgbadger-size 200] [--big 2048] [--dir /var/tmp/kb-bench-triage]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds http.py: keep this folder off sys.path so the standard library's http is found
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "%m [%p] %u@%d "
USERS = ["app", "web", "batch", "report"]
DBS = ["shop", "crm"]
QUERIES = ["SELECT * FROM orders WHERE id = {}", "UPDATE items SET name = 'x{}' WHERE id = {}",
           "SELECT count(*) FROM customers WHERE region = 'r{}'",
           "INSERT INTO events (kind, at) VALUES ('click', now()) RETURNING {}",
           "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id > {} LIMIT 50"]


def generate(path: Path, megabytes: int, seed: int = 1) -> None:
    """A stderr log of about `megabytes` MB (real message texts, variable values)."""
    rnd = random.Random(seed)
    target = megabytes * 1024 * 1024
    t = 1775088000.0  # 2026-04-02 00:00:00 UTC
    size = 0
    tmp = path.with_suffix(".part")
    with open(tmp, "w", buffering=1 << 20) as out:
        batch = []
        while size < target:
            t += rnd.random() * 0.02
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d} UTC"
            pid = rnd.randint(1000, 60000)
            user, db = rnd.choice(USERS), rnd.choice(DBS)
            p = f"{ts} [{pid}] {user}@{db} "
            r = rnd.random()
            late = size > 0.6 * target
            if r < 0.02:
                e = rnd.random()
                if late and e < 0.3:
                    lines = [p + "FATAL:  remaining connection slots are reserved for non-replication superuser connections"]
                elif e < 0.4:
                    n = rnd.randint(1, 5)
                    lines = [p + f'ERROR:  relation "missing_{n}" does not exist at character 15',
                             p + f"STATEMENT:  SELECT * FROM missing_{n}"]
                elif e < 0.7:
                    k = rnd.randint(1, 99999)
                    lines = [p + 'ERROR:  duplicate key value violates unique constraint "orders_pkey"',
                             p + f"DETAIL:  Key (id)=({k}) already exists.",
                             p + f"STATEMENT:  INSERT INTO orders (id) VALUES ({k})"]
                elif e < 0.85:
                    q = rnd.choice(QUERIES)
                    lines = [p + "ERROR:  canceling statement due to statement timeout",
                             p + "STATEMENT:  " + q.format(*(rnd.randint(1, 99999) for _ in range(q.count("{}"))))]
                else:
                    lines = [p + f'FATAL:  password authentication failed for user "{user}"',
                             p + 'DETAIL:  Connection matched pg_hba.conf line 99: "host all all 0.0.0.0/0 scram-sha-256"']
            elif r < 0.75:
                q = rnd.choice(QUERIES)
                q = q.format(*(rnd.randint(1, 99999) for _ in range(q.count("{}"))))
                lines = [p + f"LOG:  duration: {rnd.random() * 50:.3f} ms  statement: {q}"]
            elif r < 0.83:
                lines = [f"{ts} [{pid}] [unknown]@[unknown] LOG:  connection received: host=10.0.{rnd.randint(0, 9)}."
                         f"{rnd.randint(1, 254)} port={rnd.randint(30000, 60000)}"]
            elif r < 0.91:
                lines = [p + f"LOG:  connection authorized: user={user} database={db} application_name=psql"]
            elif r < 0.995:
                lines = [p + f"LOG:  disconnection: session time: 0:00:0{rnd.randint(0, 9)}.{rnd.randint(0, 999):03d} "
                             f"user={user} database={db} host=10.0.0.{rnd.randint(1, 254)} port={rnd.randint(30000, 60000)}"]
            else:
                lines = [f"{ts} [{pid}] @ LOG:  checkpoint starting: time",
                         f"{ts} [{pid}] @ LOG:  checkpoint complete: wrote {rnd.randint(1, 999)} buffers (0.{rnd.randint(0, 9)}%); "
                         "0 WAL file(s) added, 0 removed, 1 recycled; write=1.105 s, sync=0.002 s, total=1.120 s; "
                         "sync files=9, longest=0.001 s, average=0.001 s; distance=45 kB, estimate=45 kB"]
            text = "\n".join(lines) + "\n"
            batch.append(text)
            size += len(text)
            if len(batch) >= 10000:
                out.write("".join(batch))
                batch = []
        out.write("".join(batch))
    tmp.rename(path)


def log_file(folder: Path, megabytes: int) -> Path:
    path = folder / f"stderr-{megabytes}mb.log"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        generate(path, megabytes)
    return path


def timed(cmd: list[str], env: dict | None = None, stdout=subprocess.DEVNULL) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak resident KB, exit status) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, status


def pgbadger_binary() -> str:
    found = shutil.which("pgbadger")
    if found:
        return found
    print("installing pgbadger (apt-get install -y pgbadger) ...", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "pgbadger"], check=True, capture_output=True)
    return shutil.which("pgbadger") or "/usr/bin/pgbadger"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,200,400", help="MB of the logs kb triages (default %(default)s)")
    ap.add_argument("--pgbadger-size", type=int, default=200, help="MB of the log pgBadger reads too (0: skip)")
    ap.add_argument("--big", type=int, default=0, help="also measure kb's resident memory on a log of this many MB")
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/kb-bench-triage"), help="where logs are kept")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    paths = {mb: log_file(args.dir, mb) for mb in sorted(set(sizes + ([args.pgbadger_size] if args.pgbadger_size else [])
                                                            + ([args.big] if args.big else [])))}

    # Commands first, while this process is small: a child's peak resident memory as wait4 reports it
    # includes what it inherited from this process before exec.
    env = {**os.environ}
    tiny = Path(tempfile.mkdtemp(prefix="kb-bench-")) / "tiny.log"
    tiny.write_text("2026-04-02 00:00:00.000 UTC [1] @ LOG:  database system is ready to accept connections\n")
    # Once untimed: the first run after a content change builds the search index, which is neither
    # start-up as it usually is nor a cost of the log.
    timed([sys.executable, "-m", "kb", "triage", "--json", str(tiny)], env)
    wall0, cpu0, rss0, _ = timed([sys.executable, "-m", "kb", "triage", "--json", str(tiny)], env)
    commands = [f"kb triage --json, a one-line log (start-up: the catalog, the matcher, the index): {wall0:.1f} s wall, "
                f"{cpu0:.1f} s CPU, {rss0 / 1024:.0f} MB resident"]
    command_times = {}
    for mb in sorted({max(sizes)} | ({args.pgbadger_size} if args.pgbadger_size else set())
                     | ({args.big} if args.big else set())):
        wall, cpu, rss, _ = timed([sys.executable, "-m", "kb", "triage", "--json", str(paths[mb])], env)
        command_times[mb] = wall
        commands.append(f"kb triage --json {paths[mb].name}: {wall:.1f} s wall, {cpu:.1f} s CPU, {rss / 1024:.0f} MB "
                        f"resident ({(rss - rss0) / 1024:+.0f} MB over the one-line log)")
    badger = None
    if args.pgbadger_size:
        path = paths[args.pgbadger_size]
        out = Path(tempfile.mkdtemp(prefix="kb-bench-pgbadger-")) / "report.txt"
        binary = pgbadger_binary()
        print(f"pgbadger -j 1 -f stderr --prefix '{PREFIX}' -x text on {path.name} ...", file=sys.stderr)
        badger = timed([binary, "-j", "1", "-f", "stderr", "--prefix", PREFIX, "-x", "text", "-o", str(out), "-q",
                        str(path)])

    from kb.service import Service
    from kb.settings import load_config
    from kb.triage import triage

    svc = Service.from_config(load_config())
    svc.finder.matcher.find("ERROR:  warm up")
    # once untimed: the first log a process reads pays the first hit of each pattern it holds (folded
    # then), a fixed cost like start-up's (the command figures above include both), not one per MB
    with open(paths[min(sizes)], "rb") as f:
        triage(f, svc)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'log':>18} {'MB':>7} {'lines':>10} {'wall s':>7} {'CPU s':>7} {'MB/s wall':>10} {'MB/s CPU':>9}")
    rows = {}
    for mb in sizes:
        path = paths[mb]
        size = path.stat().st_size
        with open(path, "rb") as f:
            w0, c0 = time.perf_counter(), time.process_time()
            result = triage(f, svc)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        rows[mb] = (size, wall, cpu, result)
        print(f"{path.name:>18} {size / 1e6:7.1f} {result['lines']:10,} {wall:7.2f} {cpu:7.2f} {size / 1e6 / wall:10.1f} "
              f"{size / 1e6 / cpu:9.1f}")
    if len(rows) > 1:
        small, large = min(rows), max(rows)
        per_mb = {mb: r[2] / (r[0] / 1e6) for mb, r in rows.items()}
        print(f"linearity: CPU ms per MB {', '.join(f'{mb} MB: {v * 1000:.2f}' for mb, v in sorted(per_mb.items()))}; "
              f"{large} MB took {rows[large][2] / rows[small][2]:.2f}x the CPU of {small} MB for "
              f"{rows[large][0] / rows[small][0]:.2f}x the bytes")
    print(f"top three of the {min(rows)} MB log:")
    for t in rows[min(rows)][3]["top"]:
        print(f"  {t['title']}: {t['why']}")
    print()
    for line in commands:
        print(line)
    if badger is not None:
        wall, cpu, rss, _ = badger
        size = paths[args.pgbadger_size].stat().st_size
        kb_size, kb_wall, kb_cpu, _r = rows.get(args.pgbadger_size) or rows[max(rows)]
        print(f"pgBadger on {paths[args.pgbadger_size].name}: {wall:.1f} s wall, {cpu:.1f} s CPU, "
              f"{size / 1e6 / wall:.1f} MB/s wall, {size / 1e6 / cpu:.1f} MB/s CPU, {rss / 1024:.0f} MB resident")
        print(f"kb triage on the same log: {kb_size / 1e6 / kb_wall:.1f} MB/s wall, {kb_size / 1e6 / kb_cpu:.1f} MB/s CPU: "
              f"{(kb_size / kb_wall) / (size / wall):.1f}x pgBadger's throughput (wall), "
              f"{(kb_size / kb_cpu) / (size / cpu):.1f}x (CPU)")
        print(f"kb triage --json as a command on the same log (start-up included): "
              f"{size / 1e6 / command_times[args.pgbadger_size]:.1f} MB/s wall, "
              f"{wall / command_times[args.pgbadger_size]:.1f}x pgBadger's throughput")


if __name__ == "__main__":
    main()
