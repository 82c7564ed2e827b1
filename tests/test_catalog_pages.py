"""Catalog pages: /messages/<id>, /sqlstates, /sqlstates/<code> with their twins and API, how the search
page tells real hits from suggestions, and the translations on entry pages."""

from __future__ import annotations

import re

import pytest

TOO_MANY = "sorry-too-many-clients-already-59cff58f"  # sorry, too many clients already
GENERIC = "table-1d4e5643"  # table %s
GERMAN = "FATAL:  tut mir leid, schon zu viele Verbindungen"
NOTICE = "No known PostgreSQL message in this text"


@pytest.fixture(scope="module")
def svc(read_app):
    return read_app.extensions["kb"]


@pytest.fixture(scope="module")
def unexplained(svc):
    """A server message no entry explains: specific, translated, without placeholders."""
    for m in svc.messages.messages:
        if (m.component == "postgres" and m.kind == "primary" and not m.generic and "%" not in m.template
                and "de" in m.translations and m.id not in svc.finder.entry_of and len(m.template.split()) >= 4):
            return m
    pytest.fail("every message has an entry")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def page_and_twin(client, path: str) -> tuple[str, dict]:
    """The page's HTML and its .json twin, checking the Link header announces the twin and the API agrees."""
    resp = client.get(path)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.headers["Link"] == f'<{path}.json>; rel="alternate"; type="application/json"'
    twin = client.get(path + ".json")
    assert twin.status_code == 200 and twin.mimetype == "application/json"
    assert client.get("/api/v1" + path).get_json() == twin.get_json()
    return resp.get_data(as_text=True), twin.get_json()


def test_message_with_an_entry(client):
    html, data = page_and_twin(client, f"/messages/{TOO_MANY}")
    assert data["template"] == "sorry, too many clients already"
    assert data["component_name"] == "server" and data["kind_name"] == "primary message" and data["generic"] is False
    assert data["versions"] == [13, 14, 15, 16, 17, 18]
    assert data["entry"]["slug"] == "too-many-clients" and data["note"] is None
    assert [s["code"] for s in data["sqlstates"]] == ["53300"]
    assert {"lang": "de", "language": "German", "forms": ["tut mir leid, schon zu viele Verbindungen"]} in data["translations"]
    assert '<h1 class="template">sorry, too many clients already</h1>' in html
    assert 'href="/errors/too-many-clients"' in html and 'href="/sqlstates/53300"' in html
    assert html.count('class="badge ver ver-yes"') == 6
    translations = html[html.index('<details class="translations">'):html.index("</details>")]
    assert "German" in translations and '<dd lang="de"><code class="template">tut mir leid, schon zu viele Verbindungen</code></dd>' in translations
    assert "No entry is written for this message yet." not in html
    # entries of the same class (53: insufficient resources), not of the same entry
    assert data["class_entries"] and all(any(c.startswith("53") for c in e["sqlstates"]) for e in data["class_entries"])
    assert "too-many-clients" not in [e["slug"] for e in data["class_entries"]]
    assert "Entries of the same SQLSTATE class" in html
    assert "gettext catalogs" in text_of(html[html.index('id="sources"'):])


def test_message_without_an_entry(client, unexplained):
    html, data = page_and_twin(client, f"/messages/{unexplained.id}")
    assert data["entry"] is None and data["entries"] == [] and data["sqlstates"] == []
    assert data["note"] == "No entry is written for this message yet."
    assert '<p class="noentry">No entry is written for this message yet.</p>' in html
    assert "do not record which SQLSTATE" in html and 'href="/sqlstates"' in html
    assert "German" in html and "generic" not in data["kind_name"]
    assert "too generic" not in html


def test_generic_message(client):
    html, data = page_and_twin(client, f"/messages/{GENERIC}")
    assert data["template"] == "table %s" and data["generic"] is True
    assert "too generic to identify anything alone" in html


def test_psql_versions_not_shipped_here_are_unknown(client, svc):
    m = next(m for m in svc.messages.messages if m.component == "psql" and m.versions == [15, 18])
    data = client.get(f"/messages/{m.id}.json").get_json()
    assert data["versions_known"] == [15, 18]
    html = client.get(f"/messages/{m.id}").get_data(as_text=True)
    assert html.count("ver-unknown") == 4 and html.count("ver-yes") == 2


@pytest.mark.parametrize("path,error", [
    ("/messages/no-such-message", "message 'no-such-message' not found"),
    ("/sqlstates/99999", "SQLSTATE '99999' not found"),
    ("/sqlstates/53300x", "SQLSTATE '53300x' not found"),
])
def test_unknown_ids_and_codes_are_404_everywhere(client, path, error):
    page = client.get(path)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert error.replace("'", "&#39;") in page.get_data(as_text=True)
    for url in (path + ".json", "/api/v1" + path):
        resp = client.get(url)
        assert resp.status_code == 404
        assert resp.get_json() == {"ok": False, "status": 404, "error": error, "errors": []}


def test_sqlstates_lists_every_code(client, svc):
    html, data = page_and_twin(client, "/sqlstates")
    codes = [s["code"] for c in data["classes"] for s in c["sqlstates"]]
    assert data["count"] == len(codes) == len(set(codes)) == 263 == len(svc.messages.sqlstates)
    assert sorted(set(re.findall(r'href="/sqlstates/([0-9A-Z]{5})"', html))) == sorted(codes)
    assert len(data["classes"]) == data["class_count"] == len({c[:2] for c in codes})
    for c in data["classes"]:
        assert f'<section id="class-{c["class"]}">' in html and f'href="#class-{c["class"]}"' in html
    row = next(s for c in data["classes"] for s in c["sqlstates"] if s["code"] == "53300")
    assert row["condition"] == "too_many_connections" and row["psycopg"] == "TooManyConnections"
    assert "too-many-clients" in [e["slug"] for e in row["entries"]]
    assert 'href="/errors/too-many-clients"' in html
    # psycopg's class is named only where it is not the condition in CamelCase
    assert "psycopg: <code>InternalError_</code>" in html and "psycopg: <code>TooManyConnections</code>" not in html


def test_sqlstate_page(client):
    import psycopg.errors

    html, data = page_and_twin(client, "/sqlstates/53300")
    assert (data["code"], data["class"], data["class_name"], data["condition"]) == \
        ("53300", "53", "Insufficient Resources", "too_many_connections")
    assert data["psycopg"] == psycopg.errors.lookup("53300").__name__ == "TooManyConnections"
    assert "too-many-clients" in [e["slug"] for e in data["entries"]]
    assert TOO_MANY in [m["id"] for m in data["messages"]]
    assert all(e["slug"] not in [x["slug"] for x in data["entries"]] for e in data["class_entries"])
    assert all(any(c.startswith("53") for c in e["sqlstates"]) for e in data["class_entries"])
    text = text_of(html)
    for part in ("Insufficient Resources", "EXCEPTION WHEN too_many_connections THEN", "psycopg.errors.TooManyConnections",
                 "WHEN insufficient_resources catches the whole class", "Entries with this SQLSTATE",
                 "Messages known to carry it", "errcodes.txt"):
        assert part in text, part
    assert f'href="/messages/{TOO_MANY}"' in html


def test_a_warning_has_no_psycopg_class(client):
    data = client.get("/api/v1/sqlstates/01000").get_json()
    assert data["type"] == "warning" and data["psycopg"] is None
    assert "no exception class" in client.get("/sqlstates/01000").get_data(as_text=True)


@pytest.mark.parametrize("paste", [
    "ERROR 1040 (HY000): Too many connections",
    'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n    json.loads(body)\n'
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
])
def test_search_says_when_nothing_is_a_postgresql_message(client, paste):
    resp = client.post("/search", data={"q": paste}, follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    data = client.post("/api/v1/search", json={"text": paste}).get_json()
    assert data["match"] == "none" and data["notice"] == NOTICE
    assert f'<p class="notice-title">{NOTICE}</p>' in html
    assert html.index(NOTICE) < html.index('<ol class="results">')
    assert "Similar wording, not a match" in html and "found:" not in html
    assert html.count('class="result match-words suggestion"') == len(data["results"]) > 0
    assert not re.search(r"\d+ match(es)?\b", text_of(html))


def test_search_shows_a_translated_message_and_its_companions(client):
    resp = client.post("/search", data={"q": GERMAN}, follow_redirects=True)
    html = resp.get_data(as_text=True)
    text = text_of(html)
    assert NOTICE not in html
    assert "found: sorry, too many clients already · translated from German: tut mir leid, schon zu viele Verbindungen" in text
    assert re.search(r"1 message found · \d+ companion entr", text)
    first = html.index('<li class="result match-message">')
    assert 'href="/errors/too-many-clients"' in html[first:first + 300]
    assert f'href="/messages/{TOO_MANY}"' in html
    assert "Companions of the matched entry" in html
    assert 'companion of <a href="/errors/too-many-clients">FATAL: sorry, too many clients already</a>' in html


def test_search_links_a_message_without_an_entry_to_its_page(client, unexplained):
    data = client.post("/api/v1/search", json={"text": f"ERROR:  {unexplained.template}"}).get_json()
    assert data["results"][0]["kind"] == "message", data["results"][0]
    html = client.post("/search", data={"q": f"ERROR:  {unexplained.template}"}, follow_redirects=True).get_data(as_text=True)
    top = html[html.index('<li class="result'):]
    assert top.startswith('<li class="result match-message">')
    assert f'<a class="rtitle" href="/messages/{unexplained.id}">' in top
    assert '<span class="badge noentry">no entry yet</span>' in top[:top.index("</li>")]
    assert "No entry is written for this message yet" in top[:top.index("</li>")]


def test_search_says_which_sqlstate_was_in_the_paste(client):
    html = client.get("/search", query_string={"q": "pq: canceling statement (SQLSTATE 57014)"}).get_data(as_text=True)
    assert 'SQLSTATE <a href="/sqlstates/57014">57014</a> in the paste' in html
    assert "entries by SQLSTATE" in text_of(html) and NOTICE not in html


def test_entry_page_lists_its_messages_in_every_language(client):
    html = client.get("/errors/too-many-clients").get_data(as_text=True)
    section = html[html.index('<section id="translations">'):]
    section = section[:section.index("</section>")]
    assert "<details" in section and "<details open" not in section
    assert f'href="/messages/{TOO_MANY}"' in section
    assert '<dd lang="de"><code class="template">tut mir leid, schon zu viele Verbindungen</code></dd>' in section
    assert 'href="#translations"' in html
    data = client.get("/errors/too-many-clients.json").get_json()
    message = next(m for m in data["translations"] if m["id"] == TOO_MANY)
    assert message["url"] == f"/messages/{TOO_MANY}" and message["template"] == "sorry, too many clients already"
    assert {"lang": "de", "language": "German", "forms": ["tut mir leid, schon zu viele Verbindungen"]} in message["translations"]


def test_openapi_describes_the_catalog(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/messages/{mid}", "/api/v1/sqlstates", "/api/v1/sqlstates/{code}"):
        assert "404" in spec["paths"][path]["get"]["responses"] or path == "/api/v1/sqlstates"
    hit = spec["components"]["schemas"]["SearchHit"]["properties"]
    assert {"kind", "match", "lang", "message", "details"} <= set(hit)
    results = spec["components"]["schemas"]["SearchResults"]["properties"]
    assert {"match", "notice", "sqlstates"} <= set(results)


def test_a_setting_description_is_not_called_an_error(client, svc):
    m = next(m for m in svc.messages.messages if m.kind == "setting" and m.id not in svc.finder.entry_of)
    html = client.get(f"/messages/{m.id}").get_data(as_text=True)
    assert "setting description" in html and "none (not an error)" in html and "pg_settings" in html
    assert "No entry is written for this message yet." not in html and "do not record which SQLSTATE" not in html


def test_a_message_several_entries_explain_names_the_values_that_pick_each(client, svc):
    m = next(m for m in svc.messages.messages if m.template == "could not connect to server: %s" and m.component == "psql")
    entries = client.get(f"/api/v1/messages/{m.id}").get_json()["entries"]
    refused = next(e for e in entries if e["slug"] == "connection-refused")
    assert [{"position": 1, "value": "connection refused"}] in refused["when"]
    assert len({e["slug"] for e in entries}) == len(entries)
    html = client.get(f"/messages/{m.id}").get_data(as_text=True)
    assert "when value 1 is <code>connection refused</code>" in html


def test_a_long_paste_stays_whole_in_the_box(client):
    paste = "ERROR:  deadlock detected\n" + "\n".join(f"    at com.example.Service.method{i}(Service.java:{i})" for i in range(150))
    html = client.post("/search", data={"q": paste}).get_data(as_text=True)
    box = html[html.index('<textarea'):html.index('</textarea>')]
    assert box.endswith("at com.example.Service.method149(Service.java:149)")
