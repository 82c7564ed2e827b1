"""HTML pages: what an entry page shows, escaping, error pages, and refusing to serve invalid content."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_entry_page_has_every_part(client):
    html = client.get("/errors/too-many-clients").get_data(as_text=True)
    for part in ("Quick fix", "What causes it", "How to fix it", "Why it happens", "Common debug mistakes",
                 "When it signals a deeper problem", "FAQ", "Companion errors", "Sources", "Versions where the wording differs",
                 "SQLSTATE", "Difficulty", "Time to fix", "Updated", "Run the guided fix: Connection exhaustion"):
        assert part in html, part
    assert 'href="/runs/new?runbook=connection-exhaustion&amp;entry=too-many-clients"' in html
    assert '<code class="language-sql">' in html
    assert 'href="/errors/reserved-connection-slots"' in html


def test_entry_pages_render_for_every_entry(client, read_app):
    for slug in read_app.extensions["kb"].catalog.entries:
        assert client.get(f"/errors/{slug}").status_code == 200, slug


def test_browse_by_engine_tag_sqlstate(client):
    assert "pgbouncer-max-client-conn" in client.get("/errors?engine=pgbouncer").get_data(as_text=True)
    assert "deadlock-detected" in client.get("/errors?sqlstate=40P01").get_data(as_text=True)
    assert client.get("/errors?tag=connections").status_code == 200
    assert client.get("/errors?engine=oracle").status_code == 400


def test_search_page_escapes_the_query(client):
    html = client.get("/search", query_string={"q": "<script>alert(1)</script> deadlock detected"}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_unknown_page_is_an_html_404_not_a_trace(client):
    resp = client.get("/errors/does-not-exist")
    assert resp.status_code == 404 and "text/html" in resp.content_type
    assert "entry &#39;does-not-exist&#39; not found" in resp.get_data(as_text=True)


def test_pages_are_accessible_basics(client):
    html = client.get("/").get_data(as_text=True)
    assert 'class="skip" href="#main"' in html and '<label for="q">' in html and 'lang="en"' in html


def test_serve_refuses_invalid_content(tmp_path):
    bad = tmp_path / "content" / "postgresql"
    bad.mkdir(parents=True)
    (bad / "broken.md").write_text("---\ntitle: x\n---\n")
    (tmp_path / "runbooks").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env.update(KB_CONTENT_DIR=str(tmp_path / "content"), KB_RUNBOOKS_DIR=str(tmp_path / "runbooks"),
               KB_INSTANCE_DIR=str(tmp_path / "inst"), KB_PORT="1")
    res = subprocess.run([sys.executable, "-m", "kb", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    assert "content is invalid; not starting" in res.stderr
    assert "content/postgresql/broken.md:2: title: String should have at least 5 characters" in res.stderr
    assert "content/postgresql/broken.md:2: engine: required field is missing" in res.stderr


def test_cli_search_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env["KB_INSTANCE_DIR"] = str(tmp_path)
    res = subprocess.run([sys.executable, "-m", "kb", "search", "--json", "-"], input="FATAL:  sorry, too many clients already",
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    import json

    top = json.loads(res.stdout)["results"][0]
    assert top["slug"] == "too-many-clients" and top["matched"] == "sorry, too many clients already"


def test_runbook_pages_show_no_raw_placeholder(client, read_app):
    import re

    from kb.runbooks.conditions import PLACEHOLDER

    for rid in read_app.extensions["kb"].catalog.runbooks:
        html = client.get(f"/runbooks/{rid}").get_data(as_text=True)
        prose = re.sub(r"<pre>.*?</pre>", "", html, flags=re.S)  # SQL is shown as written
        assert not PLACEHOLDER.search(prose), (rid, PLACEHOLDER.search(prose).group(0))
    assert '<var class="slot">xid age</var>' in client.get("/runbooks/xid-wraparound").get_data(as_text=True)


def test_a_value_a_step_did_not_see_never_shows_as_braces():
    from kb.runbooks.conditions import NOT_SEEN, fill

    assert fill("pid {pid} holds {n} locks for {who}", None, {"who": "app"}) == f"pid {NOT_SEEN} holds {NOT_SEEN} locks for app"


def test_favicon_and_a_description_on_every_page(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
    for page in ("/", "/errors", "/errors/too-many-clients", "/runbooks", "/runbooks/connection-exhaustion", "/search",
                 "/sqlstates/53300", "/triage", "/login", "/runs", "/errors/nope"):
        html = client.get(page).get_data(as_text=True)
        assert '<link rel="icon" href="/static/favicon.svg"' in html, page
        desc = html.split('<meta name="description" content="', 1)[1].split('"', 1)[0]
        assert 20 <= len(desc) <= 163, (page, desc)


def test_home_leads_with_the_box_and_the_common_errors(client):
    html = client.get("/").get_data(as_text=True)
    assert "autofocus" in html.split('id="q"', 1)[1].split(">", 1)[0]
    common = html.split("Most common errors", 1)[1].split("</ul>", 1)[0]
    assert common.index("/errors/too-many-clients") < common.index("/errors/deadlock-detected")
    assert common.count("<li>") == 8 and 'class="tag"' not in html and "Browse all" in html
    data = client.get("/index.json").get_json()
    assert [e["slug"] for e in data["common"]][:2] == ["too-many-clients", "password-authentication-failed"]


def test_browse_is_sorted_by_title_and_filters_without_javascript(client):
    data = client.get("/errors.json").get_json()
    titles = [e["title"].casefold() for e in data["entries"]]
    assert titles == sorted(titles)
    narrowed = client.get("/errors.json?filter=deadlock").get_json()
    assert 0 < narrowed["count"] < data["count"] and "deadlock-detected" in {e["slug"] for e in narrowed["entries"]}
    assert client.get("/errors.json?filter=40P01 deadlock").get_json()["count"] >= 1
    html = client.get("/errors?filter=deadlock").get_data(as_text=True)
    assert 'name="filter" type="search" value="deadlock"' in html and "/errors/deadlock-detected" in html
    assert "/errors/too-many-clients" not in html.split("<tbody>", 1)[1]
    assert "No entry matches" in client.get("/errors?filter=zzzqqq").get_data(as_text=True)
