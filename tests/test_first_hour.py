"""Every page type on a phone (360 px) and a desktop (1280 px) in real headless Chromium: nothing wider
than the screen, no console or page errors, and no serious or critical axe-core violation.

One browser and one server for the module; the run page shows a real run against a throwaway cluster.
Screenshots are saved under test-artifacts/first-hour-*.png for a person to look at.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from kb.scenarios.cluster import Cluster
from tests.server import Server
from tests.test_browser import ARGS

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

from axe_playwright_python.sync_playwright import Axe  # noqa: E402  (the test extra; only Chromium may be absent)
from playwright import sync_api as playwright_api  # noqa: E402

WIDTHS = {"phone": 360, "desktop": 1280}
PASTE = "2026-11-26 10:00:00.123 UTC [4711] billing@shop FATAL:  sorry, too many clients already"
LOG = "\n".join([
    "2026-11-26 10:00:00.123 UTC [4711] billing@shop FATAL:  sorry, too many clients already",
    "2026-11-26 10:00:01.456 UTC [4712] app@shop ERROR:  relation \"public.orders_archive_2026_11\" does not exist at character 15",
    "2026-11-26 10:00:01.456 UTC [4712] app@shop STATEMENT:  SELECT * FROM public.orders_archive_2026_11 WHERE id = 1",
    "2026-11-26 10:01:02.789 UTC [4713] app@shop ERROR:  deadlock detected",
    "2026-11-26 10:01:02.789 UTC [4713] app@shop DETAIL:  Process 4713 waits for ShareLock on transaction 1234; blocked by process 4714.",
])
# axe-core's defaults, plus WCAG 2.2's 24 px touch targets (off by default in axe 4.12)
AXE_OPTIONS = {"resultTypes": ["violations"], "rules": {"target-size": {"enabled": True}}}
# (name, path, whether the browser is signed in); the login page is seen signed out, the account page signed in
PAGES = [
    ("home", "/", True),
    ("search", "/search?" + urllib.parse.urlencode({"q": PASTE}), True),
    ("search-suggestions", "/search?q=hello+world+timeout", True),  # no known message: entries sharing words
    ("entry", "/errors/too-many-clients", True),
    ("browse", "/errors", True),
    ("message", "/messages/sorry-too-many-clients-already-59cff58f", True),
    ("sqlstates", "/sqlstates", True),
    ("sqlstate", "/sqlstates/53300", True),
    ("runbook", "/runbooks/connection-exhaustion", True),
    ("run", "/runs/{run}", True),
    ("runs", "/runs", True),
    ("triage", "/triage", True),
    ("triage-report", "/triage", True),  # the same page after a log was pasted
    ("login", "/login", False),
    ("account", "/login", True),
    ("start-run", "/runs/new?runbook=connection-exhaustion", True),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A throwaway cluster as target `prod`, a kb server, an admin token and a run that finished against it."""
    cluster = Cluster(settings={"max_connections": 20}).start()
    server = Server(tmp_path_factory.mktemp("first-hour"), f'[targets.prod]\ndsn = "{cluster.dsn()}"\n'
                                                          'description = "Production"\n')
    admin = server.token("alice", "admin")
    server.start()
    try:
        body = json.dumps({"runbook": "connection-exhaustion", "target": "prod", "params": {}, "auto": True}).encode()
        req = urllib.request.Request(server.url + "/api/v1/runs", data=body,
                                     headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            run = json.loads(r.read())
        assert run["status"] == "finished", run
        yield {"server": server, "admin": admin, "run": run["id"]}
    finally:
        server.stop()
        cluster.destroy()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def contexts(world, browser):
    """One browser context per (width, signed in), made when first asked for."""
    made: dict[tuple[str, bool], object] = {}

    def get(width: str, signed_in: bool):
        if (width, signed_in) not in made:
            ctx = browser.new_context(viewport={"width": WIDTHS[width], "height": 800})
            if signed_in:
                page = ctx.new_page()
                page.goto(world["server"].url + "/login")
                page.fill("#token", world["admin"])
                page.click("button[type=submit]")
                page.wait_for_load_state()
                page.close()
            made[(width, signed_in)] = ctx
        return made[(width, signed_in)]

    yield get
    for ctx in made.values():
        ctx.close()


@pytest.fixture(scope="module")
def axe():
    return Axe()


def overflow(page) -> dict:
    """The page's scroll width against the window's, and the widest elements that stick out past it."""
    return page.evaluate("""() => {
        const w = window.innerWidth;
        const out = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > w + 0.5 && !e.closest('.tablewrap, pre, .graph-canvas'))
            .slice(0, 8)
            .map(e => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '')
                      + ' right=' + Math.round(e.getBoundingClientRect().right));
        return {scroll: document.documentElement.scrollWidth, inner: w, out};
    }""")


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize(("name", "path", "signed_in"), PAGES, ids=[p[0] for p in PAGES])
def test_page_fits_and_passes_axe(world, contexts, axe, artifacts, name, path, signed_in, width):
    page = contexts(width, signed_in).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        resp = page.goto(world["server"].url + path.format(run=world["run"]))
        assert resp.status == 200, (resp.status, path)
        if name == "triage-report":
            page.fill("#triage-text", LOG)
            page.click("#triage-go")
            page.wait_for_selector("#triage-report .triage-summary")
        if name in ("runbook", "run"):  # the graph is drawn by JavaScript once its place is scrolled to
            page.evaluate("document.querySelector('[data-graph]').previousElementSibling.scrollIntoView()")
            page.wait_for_selector("#graph .graph-canvas svg g.node", timeout=30_000)
        shot = artifacts / f"first-hour-{name}-{width}.png"
        page.screenshot(path=str(shot))  # the first screen; the whole page below when something is wrong

        fit = overflow(page)
        results = axe.run(page, options=AXE_OPTIONS).response
        bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
               for v in results["violations"] if v["impact"] in ("serious", "critical")]
        if fit["scroll"] > fit["inner"] or bad or problems:
            page.screenshot(path=str(shot), full_page=True)
        assert fit["scroll"] <= fit["inner"], fit
        assert bad == []
        assert problems == []
    finally:
        page.close()
