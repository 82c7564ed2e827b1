"""Runbook graphs in real headless Chromium: drawn from the page's DOT by the vendored Graphviz build,
one node per step, a finished run's path highlighted, usable on a phone, hidden without JavaScript.

Screenshots are saved under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from kb.runbooks.loader import load_runbooks
from kb.scenarios.cluster import Cluster
from tests.server import Server
from tests.test_browser import ARGS

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = "connection-exhaustion"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
MIN_SCALE = 0.65  # static/graph.js


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A healthy cluster, a kb server with it as target `prod`, an admin token and a finished run."""
    cluster = Cluster(settings={"max_connections": 20}).start()
    server = Server(tmp_path_factory.mktemp("graph"), f'[targets.prod]\ndsn = "{cluster.dsn()}"\n')
    admin = server.token("alice", "admin")
    server.start()
    try:
        finished = api(server, admin, "/api/v1/runs", {"runbook": RUNBOOK, "target": "prod", "params": {}, "auto": True})
        assert finished["status"] == "finished", finished["summary"]
        yield {"cluster": cluster, "server": server, "admin": admin, "finished": finished}
    finally:
        server.stop()
        cluster.destroy()


def api(server, token, path, body=None) -> dict:
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


def page_for(browser, world, viewport, js=True):
    ctx = browser.new_context(viewport=viewport, java_script_enabled=js)
    page = ctx.new_page()
    problems = []
    # a missing resource is reported by its response (the console only says "404"); no page has a favicon
    page.on("console", lambda m: problems.append(m.text)
            if m.type in ("error", "warning") and not m.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(world["server"].url + "/login")
    page.fill("#token", world["admin"])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return ctx, page, problems


def drawn(page) -> dict:
    """What the drawn graph holds: node titles (step ids) by class, edge classes, sizes."""
    page.wait_for_selector("#graph .graph-canvas svg g.node", timeout=30_000)
    return page.evaluate("""() => {
        const svg = document.querySelector('#graph .graph-canvas svg');
        const canvas = svg.parentElement;
        const ids = sel => [...svg.querySelectorAll(sel)].map(g => g.querySelector('title').textContent);
        return {nodes: ids('g.node'), on: ids('g.node.on-path'), off: ids('g.node.off-path'),
                edges: svg.querySelectorAll('g.edge').length, edgesOn: svg.querySelectorAll('g.edge.on-path').length,
                viewBox: svg.getAttribute('viewBox'), widthAttr: svg.getAttribute('width'),
                shown: svg.getBoundingClientRect().width, natural: parseFloat(svg.dataset.width),
                canvasWidth: canvas.clientWidth, canvasScroll: canvas.scrollWidth,
                canvasRight: canvas.getBoundingClientRect().right,
                focusShown: (() => {
                    const f = canvas.dataset.focus && svg.querySelector('#' + CSS.escape(canvas.dataset.focus));
                    if (!f) return null;
                    const r = f.getBoundingClientRect(), b = canvas.getBoundingClientRect();
                    return r.left >= b.left && r.right <= b.left + canvas.clientWidth
                        && r.top >= b.top && r.bottom <= b.top + canvas.clientHeight;
                })(),
                fontPx: Math.min(...[...svg.querySelectorAll('g.node text')].map(t => t.getBoundingClientRect().height))};
    }""")


def steps_of(rid: str) -> list[str]:
    runbooks, _ = load_runbooks(ROOT / "runbooks")
    return list(runbooks[rid].steps)


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_runbook_page_draws_a_node_per_step(world, browser, artifacts, name, viewport):
    ctx, page, problems = page_for(browser, world, viewport)
    page.goto(world["server"].url + f"/runbooks/{RUNBOOK}")
    g = drawn(page)
    assert sorted(g["nodes"]) == sorted(steps_of(RUNBOOK))
    assert g["on"] == [] and g["off"] == []  # no run, nothing highlighted
    assert g["viewBox"] and g["widthAttr"] is None  # scales with its container
    assert g["canvasRight"] <= viewport["width"]  # the graph scrolls inside its box, which fits the page
    assert g["fontPx"] >= 9, g  # labels stay readable: a wide graph scrolls rather than shrinking away
    # fitted to the box's width, but never below the scale that keeps labels readable (then it scrolls)
    room = g["canvasWidth"] - 16
    assert g["shown"] == pytest.approx(g["natural"] * min(1, max(MIN_SCALE, room / g["natural"])), abs=1)
    assert (g["canvasScroll"] > g["canvasWidth"]) == (g["natural"] * MIN_SCALE > room)
    assert page.locator("#step-slots").is_visible()  # the step list stays below the graph
    page.screenshot(path=str(artifacts / f"graph-runbook-{name}.png"), full_page=True)
    page.locator("#graph svg g.node", has=page.locator("title", has_text="limits-reserved")).locator("a").click()
    page.wait_for_function("location.hash === '#step-limits-reserved'")
    assert problems == []
    ctx.close()


@pytest.mark.parametrize(("name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_finished_run_page_highlights_the_path_taken(world, browser, artifacts, name, viewport):
    run = world["finished"]
    visited = list(dict.fromkeys(s["step_id"] for s in run["steps"]))
    assert run["conclusion"]["outcome"] == "healthy" and len(visited) >= 3
    ctx, page, problems = page_for(browser, world, viewport)
    page.goto(world["server"].url + f"/runs/{run['id']}")
    g = drawn(page)
    assert sorted(g["nodes"]) == sorted(steps_of(RUNBOOK))
    assert sorted(g["on"]) == sorted(visited)
    assert sorted(g["off"]) == sorted(set(steps_of(RUNBOOK)) - set(visited))
    assert g["edgesOn"] == len(visited) - 1 and g["edges"] > g["edgesOn"]
    assert g["canvasRight"] <= viewport["width"] and g["fontPx"] >= 9, g
    assert g["focusShown"], "the step the run ended at is scrolled into the graph's view"
    page.screenshot(path=str(artifacts / f"graph-run-{name}.png"), full_page=True)
    # the graph alone, clear of the page's sticky header
    page.evaluate("scrollTo(0, document.getElementById('graph').getBoundingClientRect().top + scrollY - 80)")
    box = page.locator("#graph").bounding_box()
    page.screenshot(path=str(artifacts / f"graph-run-{name}-graph.png"),
                    clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], 2000)})
    # a visited node leads to that step's card in the run
    seq = max(s["seq"] for s in run["steps"] if s["step_id"] == visited[1])
    page.locator("#graph svg g.node", has=page.locator("title", has_text=visited[1])).first.locator("a").click()
    page.wait_for_function(f"location.hash === '#step-{seq}'")
    assert problems == []
    ctx.close()


def test_advancing_in_place_redraws_the_path(world, browser):
    run = api(world["server"], world["admin"], "/api/v1/runs", {"runbook": RUNBOOK, "target": "prod", "params": {}})
    ctx, page, problems = page_for(browser, world, DESKTOP)
    page.goto(world["server"].url + f"/runs/{run['id']}")
    assert drawn(page)["on"] == ["slots"]
    page.click("text=Run to the next decision")
    page.wait_for_selector(".verdict")
    page.wait_for_function("document.querySelectorAll('#graph svg g.node.on-path').length > 1")
    on = drawn(page)["on"]
    assert on[0] == "slots" and len(on) >= 3 and problems == []
    ctx.close()


def test_without_javascript_the_step_list_is_the_page(world, browser):
    ctx, page, _ = page_for(browser, world, DESKTOP, js=False)
    page.goto(world["server"].url + f"/runbooks/{RUNBOOK}")
    assert not page.locator("#graph").is_visible() and page.locator("#step-slots").is_visible()
    page.goto(world["server"].url + f"/runs/{world['finished']['id']}")
    assert not page.locator("#graph").is_visible() and page.locator(".verdict").is_visible()
    ctx.close()
