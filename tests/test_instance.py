"""The instance folder: only its owner may read the run store, and the catalog cache is never
unpickled unless this instance wrote it (nor is the message matcher's)."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

from kb.runbooks.store import RunStore
from kb.service.catalog import load_catalog_cached

ROOT = Path(__file__).resolve().parent.parent


def test_the_run_store_and_the_instance_folder_are_private(tmp_path):
    instance = tmp_path / "inst"
    from kb.settings import load_config

    path = load_config({"config": None, "instance_dir": str(instance)}).instance_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    store = RunStore(None, path)
    store.audit(None, "t", "x", {})
    assert stat.S_IMODE((path / "runs.sqlite3").stat().st_mode) == 0o600
    store.close()


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


MARK = "/tmp/kb-pickle-ran"


def test_a_planted_cache_file_is_not_unpickled(tmp_path):
    cache = tmp_path / "cache"
    cat = load_catalog_cached(ROOT / "content", ROOT / "runbooks", cache)
    [written] = list(cache.glob("catalog-*.pickle"))
    # someone replaces the cache with a pickle that runs a command when loaded
    written.write_bytes(b"\0" * 32 + pickle.dumps(Boom()))
    Path(MARK).unlink(missing_ok=True)
    again = load_catalog_cached(ROOT / "content", ROOT / "runbooks", cache)
    assert not Path(MARK).exists()
    assert set(again.entries) == set(cat.entries)
    assert stat.S_IMODE((cache / "cache.key").stat().st_mode) == 0o600


def test_the_matcher_read_from_its_cache_finds_what_the_built_one_finds(tmp_path):
    from kb.messages.catalog import load
    from kb.messages.match import MessageMatcher
    from kb.service.catalog import cached_matcher

    cache = tmp_path / "cache"
    built = cached_matcher(cache)  # the first start builds it and writes the cache
    [written] = list(cache.glob("matcher-*.pickle"))
    read = cached_matcher(cache)
    assert read is not built and isinstance(read, MessageMatcher)
    paste = ("2026-12-05 10:00:00 UTC [41] FATAL:  tut mir leid, schon zu viele Verbindungen\n"
             "psql: error: connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: No such file or directory\n"
             "ERROR:  relation \"orders\" does not exist at character 15\n")
    assert [f.as_dict() for f in read.find(paste)] == [f.as_dict() for f in built.find(paste)]
    assert len(read.find(paste)) == 3 and read.pattern_count == built.pattern_count
    assert read.catalog.by_key.keys() == load().by_key.keys()
    with __import__("pytest").raises(TypeError):
        pickle.dumps(read)  # its automaton's words are gone: only a freshly built matcher is written
    # a planted file is not unpickled, and the matcher is built again
    written.write_bytes(b"\0" * 32 + pickle.dumps(Boom()))
    Path(MARK).unlink(missing_ok=True)
    again = cached_matcher(cache)
    assert not Path(MARK).exists()
    assert [f.as_dict() for f in again.find(paste)] == [f.as_dict() for f in built.find(paste)]


def test_a_first_start_has_the_matcher_built_and_cached_by_a_second_process(tmp_path):
    from kb.messages.match import default_matcher
    from kb.service.catalog import cached_matcher, start_matcher_build

    cache = tmp_path / "cache"
    building = start_matcher_build(cache)
    assert building is not None and building.pid != os.getpid()
    read = cached_matcher(cache, building)  # waits for it, then reads what it wrote
    assert building.returncode == 0 and len(list(cache.glob("matcher-*.pickle"))) == 1
    paste = "ERROR:  relation \"orders\" does not exist\nFATAL:  tut mir leid, schon zu viele Verbindungen"
    assert [f.as_dict() for f in read.find(paste)] == [f.as_dict() for f in default_matcher().find(paste)]
    assert len(read.find(paste)) == 2
    assert start_matcher_build(cache) is None  # a later start reads the cache: no second process


BUILD = """
import sys
from pathlib import Path
from kb.knowledge.search import Doc, SearchIndex
ix = SearchIndex.open_or_build(Path(sys.argv[1]), sys.argv[2], [Doc("b", "B", ["other message %s"], [], [], "prose")])
ix.close()
"""


def test_an_index_in_use_is_not_removed_by_another_process(tmp_path):
    import subprocess
    import sys
    import threading

    from kb.knowledge.search import Doc, SearchIndex

    docs = [Doc("lock-timeout", "Lock timeout", ["canceling statement due to lock timeout"], ["55P03"], [], "waits")]
    ix = SearchIndex.open_or_build(tmp_path, "first", docs)
    subprocess.run([sys.executable, "-c", BUILD, str(tmp_path), "second"], check=True, cwd=ROOT)
    assert (tmp_path / "index-first" / "READY").exists()  # still held by this process
    results = []
    worker = threading.Thread(target=lambda: results.append(ix.search("ERROR: canceling statement due to lock timeout")))
    worker.start()  # a new thread opens a new searcher on the index's files
    worker.join()
    assert results[0][0]["slug"] == "lock-timeout"
    ix.close()
    subprocess.run([sys.executable, "-c", BUILD, str(tmp_path), "third"], check=True, cwd=ROOT)
    assert not (tmp_path / "index-first").exists() and not (tmp_path / "index-second").exists()
    assert (tmp_path / "index-third" / "READY").exists()
