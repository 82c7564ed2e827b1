"""Lighthouse scores (performance, accessibility, best practices, SEO) for every page type, with the
mobile and the desktop preset, against `kb serve` on a loopback port.

Needs Node 20+ and Debian's Chromium. Lighthouse itself (npm's `lighthouse`, 12.2.3) is installed
into a cache folder (default /var/tmp/kb-lighthouse) the first time. The run page shows a real run
that a throwaway PostgreSQL cluster answered. Reports (JSON) are kept in --out for a closer look.

    python bench/lighthouse.py [--pages home,entry] [--presets mobile,desktop] [--out DIR]

Targets: accessibility, best practices and SEO at least 98 each, performance at least 95.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # the repository instead of bench/ (bench/http.py would shadow http)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

from kb.scenarios.cluster import Cluster, free_port  # noqa: E402

LIGHTHOUSE = "12.2.3"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
TARGETS = {"performance": 95, "accessibility": 98, "best-practices": 98, "seo": 98}
PASTE = "2026-11-26 10:00:00.123 UTC [4711] billing@shop FATAL:  sorry, too many clients already"
# the page types of tests/test_first_hour.py that a GET reaches (the triage report needs a POST)
PAGES = {
    "home": "/",
    "search": "/search?" + urllib.parse.urlencode({"q": PASTE}),
    "entry": "/errors/too-many-clients",
    "browse": "/errors",
    "message": "/messages/sorry-too-many-clients-already-59cff58f",
    "sqlstates": "/sqlstates",
    "sqlstate": "/sqlstates/53300",
    "runbook": "/runbooks/connection-exhaustion",
    "run": "/runs/{run}",
    "runs": "/runs",
    "triage": "/triage",
    "account": "/login",  # no identities configured: a local user, shown as operator, with the sign-in form
    "start-run": "/runs/new?runbook=connection-exhaustion",
}


def lighthouse_cli(cache: Path) -> Path:
    """The Lighthouse CLI, installed with npm into `cache` when it is not there yet."""
    cli = cache / "node_modules" / "lighthouse" / "cli" / "index.js"
    if not cli.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", f"lighthouse@{LIGHTHOUSE}"],
                       check=True)
    return cli


def serve(workdir: Path, toml: str) -> tuple[subprocess.Popen, str]:
    """`kb serve` (gunicorn, two workers) on a free loopback port, once it answers /healthz."""
    (workdir / "kb.toml").write_text(toml)
    for _ in range(5):  # a port the kernel handed out meanwhile: try another
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("KB_", "PG")) and k != "DATABASE_URL"},
               "KB_CONFIG": str(workdir / "kb.toml"), "KB_INSTANCE_DIR": str(workdir / "instance"),
               "KB_CONTENT_DIR": str(ROOT / "content"), "KB_RUNBOOKS_DIR": str(ROOT / "runbooks"),
               "KB_PORT": str(port), "KB_RATE_SEARCH": "100000000/1"}
        log = open(workdir / "server.log", "a")
        proc = subprocess.Popen([sys.executable, "-m", "kb", "serve", "--workers", "2"], env=env, cwd=workdir,
                                stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    return proc, base
            except OSError:
                time.sleep(0.2)
        proc.terminate()
        proc.wait()
    raise SystemExit(f"kb serve did not start; see {workdir / 'server.log'}")


def start_run(base: str) -> str:
    """A finished run of connection-exhaustion against the target `prod` (local users are operators)."""
    body = json.dumps({"runbook": "connection-exhaustion", "target": "prod", "params": {}, "auto": True}).encode()
    req = urllib.request.Request(base + "/api/v1/runs", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["id"]


def score(cli: Path, url: str, preset: str, out: Path) -> dict[str, int]:
    """One Lighthouse run: the four category scores (0-100), the JSON report written to `out`."""
    cmd = ["node", str(cli), url, "--quiet", "--output=json", f"--output-path={out}",
           "--only-categories=" + ",".join(CATEGORIES),
           "--chrome-flags=--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking"]
    if preset == "desktop":
        cmd.append("--preset=desktop")
    subprocess.run(cmd, check=True, env={**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")},
                   stdout=subprocess.DEVNULL, timeout=300)
    report = json.loads(out.read_text())
    return {c: round((report["categories"][c]["score"] or 0) * 100) for c in CATEGORIES}


def failing(out: Path) -> list[str]:
    """The audits that cost points in a report, worst first, as 'category: audit id (score)'."""
    report = json.loads(out.read_text())
    lost = []
    for cid, cat in report["categories"].items():
        for ref in cat["auditRefs"]:
            a = report["audits"][ref["id"]]
            if ref["weight"] and a["score"] is not None and a["score"] < 1:
                lost.append((ref["weight"] * (1 - a["score"]), f"{cid}: {a['id']} ({a['score']:.2f})"))
    return [text for _, text in sorted(lost, reverse=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", default=",".join(PAGES), help="comma-separated page names (default: all)")
    ap.add_argument("--presets", default="mobile,desktop")
    ap.add_argument("--out", type=Path, default=None, help="folder for the JSON reports (default: a temporary one)")
    ap.add_argument("--lighthouse-dir", type=Path, default=Path("/var/tmp/kb-lighthouse"))
    ap.add_argument("--why", action="store_true", help="list the audits that cost points under each row")
    args = ap.parse_args()
    cli = lighthouse_cli(args.lighthouse_dir)
    out = args.out or Path(tempfile.mkdtemp(prefix="kb-lighthouse-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kb-lighthouse-serve-"))
    cluster = Cluster(settings={"max_connections": 20}).start()
    proc = None
    try:
        proc, base = serve(work, f'[targets.prod]\ndsn = "{cluster.dsn()}"\ndescription = "Production"\n')
        run = start_run(base)
        presets = args.presets.split(",")
        head = f"{'page':<11} {'preset':<8} " + " ".join(f"{c[:13]:>14}" for c in CATEGORIES)
        print(head)
        print("-" * len(head))
        below = 0
        for name in args.pages.split(","):
            for preset in presets:
                report = out / f"{name}-{preset}.json"
                got = score(cli, base + PAGES[name].format(run=run), preset, report)
                low = [c for c in CATEGORIES if got[c] < TARGETS[c]]
                below += bool(low)
                print(f"{name:<11} {preset:<8} " + " ".join(f"{got[c]:>13}{'*' if c in low else ' '}" for c in CATEGORIES),
                      flush=True)
                if args.why and low:
                    for line in failing(report)[:6]:
                        print(f"    {line}")
        print(f"\n* below target (performance {TARGETS['performance']}, the others {TARGETS['seo']}); "
              f"{below} row(s) below; reports in {out}")
    finally:
        if proc:
            proc.terminate()
            proc.wait()
        cluster.destroy()


if __name__ == "__main__":
    main()
