"""The loaded content of one deploy: entries and runbooks, validated together."""

from __future__ import annotations

import functools
import gc
import hashlib
import hmac
import os
import pickle
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kb.knowledge.loader import cross_check, load_entries
from kb.knowledge.model import Entry
from kb.errors import ContentInvalid
from kb.knowledge.problems import Problem, fold_knock_on


@dataclass
class Catalog:
    """Everything the service serves, immutable per process."""

    entries: dict[str, Entry]
    runbooks: dict
    problems: list[Problem]
    fingerprint: str

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]


# Code whose output the catalog cache and the search index hold: a change to it rebuilds them.
_DERIVED_FROM = ("knowledge/model.py", "knowledge/loader.py", "knowledge/normalize.py", "knowledge/search.py",
                 "knowledge/problems.py", "runbooks/model.py", "runbooks/loader.py", "service/catalog.py",
                 "service/messagecheck.py", "messages/data/catalog.json.gz")


def _code_hash(names: tuple[str, ...]):
    """A sha256 over these files of the kb package (paths relative to it)."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent.parent
    for name in names:
        h.update((here / name).read_bytes())
    return h


def fingerprint(*roots: Path) -> str:
    """A hash of every content file and of the code that parses and indexes it."""
    h = _code_hash(_DERIVED_FROM)
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _cache_key(cache_dir: Path) -> bytes:
    path = cache_dir / "cache.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def _read_signed(path: Path, key: bytes):
    """The object pickled in `path`, or None when it is missing or its signature does not verify.

    A pickle runs code when loaded, so each cache is signed with a key only the instance folder's
    owner can read (HMAC-SHA256), and a file whose signature does not verify is never unpickled."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    mac, data = blob[:32], blob[32:]
    if not hmac.compare_digest(mac, hmac.new(key, data, hashlib.sha256).digest()):
        return None
    try:
        return pickle.loads(data)
    except Exception:  # noqa: BLE001 - a stale or foreign cache is rebuilt, never trusted
        return None


def _write_signed(path: Path, key: bytes, obj, stale_glob: str) -> None:
    """Pickle `obj` into `path` atomically, signed, and remove the older files matching `stale_glob`."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(hmac.new(key, data, hashlib.sha256).digest() + data)
    os.replace(tmp, path)
    for old in path.parent.glob(stale_glob):
        if old != path:
            old.unlink(missing_ok=True)


def load_catalog_cached(content_dir: Path, runbooks_dir: Path, cache_dir: Path, matcher=None) -> Catalog:
    """load_catalog, reusing a signed pickle of the last valid load while the content's fingerprint is
    the same. `matcher`: how a load makes the message matcher (see load_catalog)."""
    fp = fingerprint(content_dir, runbooks_dir)
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _cache_key(cache_dir)
    cache = cache_dir / f"catalog-{fp}.pickle"
    cat = _read_signed(cache, key)
    if isinstance(cat, Catalog) and cat.fingerprint == fp:
        return cat
    cat = load_catalog(content_dir, runbooks_dir, matcher=matcher)
    _write_signed(cache, key, cat, "catalog-*.pickle")
    return cat


# The matcher's cache holds what these files make: a change to any of them makes a new one.
_MATCHER_FROM = ("messages/data/catalog.json.gz", "messages/match.py", "messages/catalog.py", "messages/formats.py")


@functools.cache
def _matcher_key() -> str:
    """The hash of what the matcher's cache holds, once per process (a start asks twice)."""
    return _code_hash(_MATCHER_FROM).hexdigest()[:16]


def _matcher_cache(cache_dir: Path) -> Path:
    return cache_dir / f"matcher-{_matcher_key()}.pickle"


# how long a start waits for the matcher a second process builds (about 1.5 s) before building it itself
MATCHER_BUILD_WAIT = 60.0


def start_matcher_build(cache_dir: Path) -> subprocess.Popen | None:
    """When `cache_dir` has no matcher cache: build and cache it in a second process, so that a first
    start loads its content (about 2 s of markdown and runbook checks) on the other core meanwhile.
    None when the cache is there. The process imports this same kb package."""
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _matcher_cache(cache_dir).exists():
        return None
    _cache_key(cache_dir)  # made here first: two processes creating it at once could sign with different keys
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent.parent),
                                         *filter(None, [env.get("PYTHONPATH")])])
    code = ("import sys; from pathlib import Path; from kb.service.catalog import cached_matcher; "
            "cached_matcher(Path(sys.argv[1]))")
    try:
        return subprocess.Popen([sys.executable, "-c", code, str(cache_dir)], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None  # the start builds it itself


def cached_matcher(cache_dir: Path, building: subprocess.Popen | None = None):
    """The message matcher of the committed catalog, from a signed pickle in `cache_dir` when one
    was written for the same catalog and matcher code, else built and cached there. `building`: the
    process start_matcher_build started, waited for first (at most MATCHER_BUILD_WAIT seconds).

    Built, it takes about 1 s (decoding 13 MB of JSON, ordering 85,000 patterns, the automaton) and
    0.5 s more to cache; read, 0.3 s plus the automaton's rebuild (MessageMatcher.__setstate__)."""
    from kb.messages.build import DATA
    from kb.messages.catalog import parse
    from kb.messages.match import MessageMatcher

    if building is not None:
        try:
            building.wait(timeout=MATCHER_BUILD_WAIT)
        except subprocess.TimeoutExpired:
            building.kill()
            building.wait()
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _cache_key(cache_dir)
    cache = _matcher_cache(cache_dir)
    enabled = gc.isenabled()
    gc.disable()  # a few million objects that all live on: collections meanwhile would scan them for nothing
    try:
        found = _read_signed(cache, key)
        if isinstance(found, MessageMatcher):
            return found
        # its own parse of the file: the matcher frees the parsed patterns as it takes them
        made = MessageMatcher(parse(DATA.read_bytes()), release=True, keep_anchors=True)
        made.catalog.by_key  # kept in the cache with the catalog
        try:
            _write_signed(cache, key, made, "matcher-*.pickle")
        except OSError:
            pass  # a read-only instance folder: the next start builds it again
        made._anchors = None
        return made
    finally:
        if enabled:
            gc.enable()


def _failed(problems: list[Problem], loaded: set[str], kind: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> path of each file with an error that kept it from loading (named by its file)."""
    return {(kind, Path(p.path).stem): p.path for p in problems
            if p.level == "error" and Path(p.path).stem not in loaded}


def load_catalog(content_dir: Path, runbooks_dir: Path, strict: bool = False, matcher=None) -> Catalog:
    """Load and cross-check everything; raise ContentInvalid listing every problem on errors.
    `matcher`: how to make the message matcher if the process has none yet (default_matcher's `build`)."""
    from kb.runbooks.loader import check_runbooks_against_entries, load_runbooks

    problems: list[Problem] = []
    if not content_dir.is_dir():
        raise ContentInvalid([Problem(str(content_dir), 0, "content_dir", "folder not found")])
    entries, found = load_entries(content_dir)
    problems += found
    broken = _failed(found, {e.slug for e in entries}, "entry")
    runbooks, found = load_runbooks(runbooks_dir)
    problems += found
    broken.update(_failed(found, set(runbooks), "runbook"))
    problems += cross_check(entries, set(runbooks))
    problems += check_runbooks_against_entries(runbooks, {e.slug: e for e in entries})
    from kb.messages.match import default_matcher
    from kb.service.messagecheck import message_problems

    matched = default_matcher(matcher)
    problems += message_problems(entries, matched.catalog, matched)
    bad = [p for p in problems if p.level == "error" or (strict and p.level == "warning")]
    if bad:
        raise ContentInvalid(fold_knock_on(bad, broken))
    return Catalog({e.slug: e for e in entries}, runbooks, problems, fingerprint(content_dir, runbooks_dir))
