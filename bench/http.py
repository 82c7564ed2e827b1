"""Requests/s under gunicorn (2 workers) for an entry page and the search API, beside a trivial
endpoint of the same app in the same run. Needs Debian's `wrk`.

    python bench/http.py [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import sys
from pathlib import Path

# this file is named http.py: keep its folder off sys.path so the standard library's http is found
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import re
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb.scenarios.cluster import free_port  # noqa: E402

PASTE = "2026-04-02 10:11:12.345 UTC [4711] app@shop FATAL:  sorry, too many clients already"


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> float:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s"] + (["-s", script] if script else []) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} non-2xx responses\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="kb-bench-")
    env = {**os.environ, "KB_PORT": str(port), "KB_INSTANCE_DIR": tmp, "KB_CONFIG": os.path.join(tmp, "none.toml"),
           "KB_RATE_SEARCH": "100000000/1", "KB_CONTENT_DIR": str(ROOT / "content"), "KB_RUNBOOKS_DIR": str(ROOT / "runbooks")}
    Path(env["KB_CONFIG"]).write_text("")
    base = f"http://127.0.0.1:{port}"

    def serve() -> tuple[subprocess.Popen, float]:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "kb", "serve", "--workers", "2"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                return p, time.perf_counter() - t0
            except OSError:
                time.sleep(0.02)
        raise SystemExit("kb serve did not start")

    proc, cold = serve()  # builds the index and the catalog cache
    proc.terminate()
    proc.wait(timeout=10)
    proc, warm = serve()
    print(f"kb serve ready: {cold:.2f} s with an empty instance folder, {warm:.2f} s with the index built "
          f"(target <= 2 s -> {'met' if warm <= 2 else 'NOT met'})")
    try:
        urls = {
            "trivial /healthz": base + "/healthz",
            "entry page /errors/too-many-clients": base + "/errors/too-many-clients",
            "search API GET /api/v1/search": base + "/api/v1/search?q=" + urllib.parse.quote(PASTE),
        }
        for u in urls.values():
            urllib.request.urlopen(u, timeout=5).read()  # warm: render once, open searchers
        rates = {name: wrk(u, args.seconds, args.connections) for name, u in urls.items()}
        rates["search API, varied pastes (lua)"] = wrk(base + "/", args.seconds, args.connections,
                                                        str(Path(__file__).resolve().parent / "search_pastes.lua"))
        trivial = rates["trivial /healthz"]
        print(f"gunicorn 2 workers (gthread), wrk -t2 -c{args.connections} -d{args.seconds}s, one run:")
        for name, r in rates.items():
            print(f"  {name:40s} {r:8.0f} req/s  ({100 * r / trivial:5.1f}% of trivial)")
        entry = rates["entry page /errors/too-many-clients"] / trivial
        search = min(rates["search API GET /api/v1/search"], rates["search API, varied pastes (lua)"]) / trivial
        print(f"targets: entry >= 50% -> {'met' if entry >= 0.5 else 'NOT met'}; search >= 20% -> {'met' if search >= 0.2 else 'NOT met'}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
