"""Responses are gzipped for clients that ask, byte for byte the same once decompressed, and stay conditional."""

from __future__ import annotations

import gzip

import pytest

GZIP = {"Accept-Encoding": "gzip"}


def test_errors_page_is_gzipped_for_clients_that_ask(client):
    plain = client.get("/errors")
    packed = client.get("/errors", headers=GZIP)
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in [v.strip() for v in packed.headers["Vary"].split(",")]
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 3
    assert gzip.decompress(packed.data) == plain.data
    assert plain.mimetype == packed.mimetype == "text/html"


@pytest.mark.parametrize("url,mimetype", [
    ("/api/v1/entries", "application/json"),
    ("/errors/too-many-clients.json", "application/json"),
    ("/api/v1/openapi.json", "application/json"),
    ("/static/kb.css", "text/css"),
    ("/static/kb.js", "text/javascript"),
])
def test_text_types_are_gzipped(client, url, mimetype):
    plain = client.get(url)
    packed = client.get(url, headers=GZIP)
    assert packed.mimetype == mimetype
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data
    plain.close()
    packed.close()


@pytest.mark.parametrize("url", ["/static/favicon.svg", "/api/v1/targets", "/healthz"])
def test_small_responses_are_sent_as_they_are(client, url):
    r = client.get(url, headers=GZIP)
    assert r.status_code == 200 and len(r.data) < 500
    assert "Content-Encoding" not in r.headers
    r.close()


@pytest.mark.parametrize("headers", [{}, GZIP], ids=["identity", "gzip"])
def test_static_files_answer_conditional_requests(client, headers):
    first = client.get("/static/kb.css", headers=headers)
    etag = first.headers["ETag"]
    assert etag.endswith(':gzip"') == bool(headers)
    again = client.get("/static/kb.css", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert "Content-Encoding" not in again.headers
    first.close()
    again.close()


def test_a_range_of_a_static_file_is_not_gzipped(client):
    whole = client.get("/static/kb.css")
    part = client.get("/static/kb.css", headers={**GZIP, "Range": "bytes=0-99"})
    assert part.status_code == 206
    assert "Content-Encoding" not in part.headers
    assert part.data == whole.data[:100]
    whole.close()
    part.close()


LOG = "".join(f"2024-05-01 10:00:{s:02d}.123 UTC [{4000 + s}] app@shop FATAL:  sorry, too many clients already\n"
              for s in range(40)).encode()


def test_triage_reads_a_gzip_upload_and_gzips_its_report(client):
    plain = client.post("/api/v1/triage", data=gzip.compress(LOG), content_type="application/octet-stream")
    packed = client.post("/api/v1/triage", data=gzip.compress(LOG), content_type="application/octet-stream",
                         headers=GZIP)
    assert plain.status_code == packed.status_code == 200, plain.get_data(as_text=True)
    assert packed.headers["Content-Encoding"] == "gzip"
    import json

    report, unpacked = plain.get_json(), json.loads(gzip.decompress(packed.data))
    report.pop("seconds"), unpacked.pop("seconds")
    assert unpacked == report
    assert report["compression"] == "gzip" and report["messages"][0]["count"] == 40
