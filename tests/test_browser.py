"""The guided fix in real headless Chromium (Debian's, via Playwright), with and without JavaScript.

Screenshots are saved under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import time

import pytest

from kb import scenarios
from tests.server import Server

playwright_api = pytest.importorskip("playwright.sync_api")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PASTE = "2026-11-26 10:00:00.123 UTC [4711] billing@shop FATAL:  sorry, too many clients already"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A cluster with idle-in-transaction sessions, a kb server pointing at it, an admin token."""
    cluster, holder = scenarios.start("connections-idle-in-transaction")
    target = scenarios.SCENARIOS["connections-idle-in-transaction"].target(cluster)
    toml = f'[targets.prod]\ndsn = "{target["dsn"]}"\nreserved_dsn = "{target["reserved_dsn"]}"\ndescription = "Production"\n'
    server = Server(tmp_path_factory.mktemp("browser"), toml)
    admin = server.token("alice", "admin")
    server.start()
    yield {"cluster": cluster, "holder": holder, "server": server, "admin": admin}
    server.stop()
    holder.close()
    cluster.destroy()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield b
        b.close()


def zombies(world, n=2):
    for _ in range(n):
        conn = world["holder"].connect(user="app", app="billing", autocommit=False)
        conn.execute("SELECT 1")
    time.sleep(1.2)


def billing_sessions(world) -> int:
    deadline = time.monotonic() + 5
    while True:
        n = world["cluster"].sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing'")[0][0]
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def sign_in(page, world):
    page.goto(world["server"].url + "/login")
    page.fill("#token", world["admin"])
    page.click("button[type=submit]")
    page.wait_for_load_state()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_paste_to_confirmed_fix(world, browser, artifacts, js):
    zombies(world)
    assert world["cluster"].sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing'")[0][0] >= 2
    ctx = browser.new_context(java_script_enabled=js, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    shot = lambda name: page.screenshot(path=str(artifacts / f"browser-{'js' if js else 'nojs'}-{name}.png"), full_page=True)  # noqa: E731
    sign_in(page, world)

    page.goto(world["server"].url + "/")
    page.fill("#q", PASTE)
    page.click("text=Find the error")
    page.wait_for_url("**/search?**")
    shot("1-search")
    first = page.locator(".result a.rtitle").first
    assert first.inner_text() == "FATAL: sorry, too many clients already"
    first.click()
    page.wait_for_url("**/errors/too-many-clients")
    shot("2-entry")

    page.click("text=Run the guided fix: Connection exhaustion")
    page.wait_for_url("**/runs/new?**")
    page.select_option("#target", "prod")
    page.fill("#param-idle_seconds", "1")
    shot("3-start")
    page.click("text=Start the run")
    page.wait_for_url("**/runs/*")
    page.click("text=Run to the next decision")
    page.wait_for_selector("text=This action would affect")
    shot("4-action-preview")
    assert "billing" in page.locator("#current table").inner_text()

    page.check("input[name=understood]")
    page.click("text=Confirm and run")
    if js:
        page.wait_for_selector("dialog[open]")
        shot("5-confirm-dialog")
        page.click("dialog [data-dialog=yes]")
    page.wait_for_selector(".verdict")
    shot("6-conclusion")
    text = page.locator("#run").inner_text()
    assert "The idle-in-transaction sessions were terminated" in text
    assert "usage_pct" in text  # the branch reason in words
    assert billing_sessions(world) == 0
    # every step's SQL is there, collapsed, and the conclusion links to the entry's fix section
    assert page.locator("details.sql").count() >= 3
    assert page.locator(".verdict ~ ul a[href^='/errors/too-many-clients#']").count() >= 1
    ctx.close()


def test_question_steps_are_buttons_and_history_lists_runs(world, browser, artifacts):
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})  # a phone
    page = ctx.new_page()
    sign_in(page, world)
    idle = world["holder"].hold(3, user="app", app="worker")
    page.goto(world["server"].url + "/runs/new?runbook=connection-exhaustion")
    page.fill("#param-saturation_pct", "10")
    page.fill("#param-idle_share_pct", "10")
    page.click("text=Start the run")
    page.wait_for_url("**/runs/*")
    page.click("text=Run to the next decision")
    page.wait_for_selector("text=How do its processes connect")
    page.screenshot(path=str(artifacts / "browser-phone-question.png"), full_page=True)
    page.click("text=Serverless functions or short-lived jobs")
    page.wait_for_selector(".verdict")
    assert "Every concurrent function instance" in page.locator(".verdict").inner_text()
    page.goto(world["server"].url + "/runs")
    assert page.locator("table.grid tbody tr").count() >= 1
    for c in idle:
        c.close()
    ctx.close()


def test_failure_is_a_classified_outcome_not_a_stack_trace(world, browser, artifacts, tmp_path):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    sign_in(page, world)
    # fill every usable slot so kb's own role is refused, then see the reserved-slot path in the page
    import psycopg

    extra = []
    for _ in range(10):  # take every usable slot there is
        try:
            extra.append(world["holder"].connect(user="app", app="flood"))
        except psycopg.OperationalError:
            break
    try:
        page.goto(world["server"].url + "/runs/new?runbook=connection-exhaustion")
        page.click("text=Start the run")
        page.wait_for_url("**/runs/*")
        page.click("text=Run this step")
        page.wait_for_selector(".outcome.error")
        page.screenshot(path=str(artifacts / "browser-classified-error.png"), full_page=True)
        err = page.locator(".outcome.error").first.inner_text()
        assert "53300" in err and "Traceback" not in page.content()
        assert page.locator(".outcome.error a[href='/errors/reserved-connection-slots']").count() == 1
    finally:
        for c in extra:
            c.close()
    ctx.close()
