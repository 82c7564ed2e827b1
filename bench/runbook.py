"""Engine overhead per diagnostic step, and connections held under 20 concurrent runs.

Per step: the time of `advance` through the run service (pool, read-only transaction with local
timeouts, the query, rollback, result conversion, the step committed to the SQLite run store)
minus the time of the same query on an already open psycopg connection. The step is claimed in
the store before it runs and its connection slot is leased there, so each store is measured: SQLite
(one host) and PostgreSQL (many hosts; a second throwaway cluster).

    python bench/runbook.py [--steps 300] [--runs 20] [--store sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the repository instead of bench/ (bench/http.py would shadow http)

import psycopg  # noqa: E402

from kb.scenarios.cluster import Cluster  # noqa: E402
from kb.scenarios import ConnectionWatch, base_roles  # noqa: E402
from kb.service import Service  # noqa: E402
from kb.settings import load_config  # noqa: E402
from kb.web.auth import Identity  # noqa: E402

OP = Identity("bench", "operator", "token")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    cluster = Cluster(settings={"max_connections": 40}).start()
    base_roles(cluster)
    store = Cluster(settings={"max_connections": 40}).start() if args.store != "sqlite" else None
    try:
        for kind in (["sqlite", "postgresql"] if args.store == "both" else [args.store]):
            url = store.url() if kind == "postgresql" else None
            if url:
                store.sql("DROP DATABASE IF EXISTS bench_store")
                store.sql("CREATE DATABASE bench_store")
                url = store.url("postgres", "bench_store")
            measure(args, cluster, kind, url)
    finally:
        cluster.destroy()
        if store is not None:
            store.destroy()


def measure(args, cluster, kind, url) -> None:
    tmp = tempfile.mkdtemp(prefix="kb-bench-")
    if True:
        cfg = load_config({"config": None, "instance_dir": tmp, "store_url": url,
                           "targets": {"t": {"dsn": cluster.dsn("monitor")}}})
        svc = Service.from_config(cfg)
        runs = svc.runs
        rb = svc.catalog.runbooks["connection-exhaustion"]
        step = rb.steps["slots"]

        # through the engine: one run per sample, timing the advance that executes `slots`
        engine = []
        for _ in range(args.steps + 20):
            run = runs.start("connection-exhaustion", "t", {}, OP)
            t0 = time.perf_counter()
            runs.advance(run["id"], OP)
            engine.append((time.perf_counter() - t0) * 1000)
        engine = engine[20:]

        # the same query on an already open connection
        with psycopg.connect(cluster.dsn("monitor"), autocommit=True) as conn:
            sql = runs.executor.pick_sql(step, conn.info.server_version)
            params = {"saturation_pct": 80, "idle_seconds": 300, "idle_share_pct": 50}
            direct = []
            for _ in range(args.steps + 20):
                t0 = time.perf_counter()
                conn.execute(sql, params).fetchall()
                direct.append((time.perf_counter() - t0) * 1000)
            direct = direct[20:]
        e50, d50 = statistics.median(engine), statistics.median(direct)
        print(f"per diagnostic step ({args.steps} samples, {kind} store, target idle keep {cfg.target_idle_seconds:g} s):")
        print(f"  through the engine: p50 {e50:.2f} ms, p99 {pct(engine, 0.99):.2f} ms")
        print(f"  open connection:    p50 {d50:.2f} ms, p99 {pct(direct, 0.99):.2f} ms")
        budget = 3 if kind == "sqlite" else 5
        print(f"  overhead p50: {e50 - d50:.2f} ms (target <= {budget} ms -> {'met' if e50 - d50 <= budget else 'NOT met'})")

        # 20 concurrent runs on one target with cap 1
        done, failed = [], []

        def one():
            try:
                r = runs.start("connection-exhaustion", "t", {}, OP, auto=True)
                (done if r["status"] == "finished" else failed).append(r["id"])
            except Exception as exc:  # noqa: BLE001
                failed.append(repr(exc))

        with ConnectionWatch(cluster.dsn("postgres"), every=0.002) as watch:
            t0 = time.perf_counter()
            threads = [threading.Thread(target=one) for _ in range(args.runs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
        stored = {r["id"] for r in runs.store.recent(1000)}
        print(f"{args.runs} concurrent runs, cap 1: {len(done)} finished, {len(failed)} not, "
              f"{len(set(done) & stored)} in the store; peak kb connections {watch.peak} (cap 1); {wall:.2f} s wall")
        runs.close()


if __name__ == "__main__":
    main()
