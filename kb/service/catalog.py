"""The loaded content of one deploy: entries and runbooks, validated together."""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
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


def fingerprint(*roots: Path) -> str:
    """A hash of every content file and of the code that parses and indexes it."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent.parent
    for name in _DERIVED_FROM:
        h.update((here / name).read_bytes())
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


def load_catalog_cached(content_dir: Path, runbooks_dir: Path, cache_dir: Path) -> Catalog:
    """load_catalog, reusing a pickle of the last valid load while the content's fingerprint is the same.

    A pickle runs code when loaded, so the cache is signed with a key only this instance folder's
    owner can read (HMAC-SHA256), and a file whose signature does not verify is never unpickled."""
    fp = fingerprint(content_dir, runbooks_dir)
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _cache_key(cache_dir)
    cache = cache_dir / f"catalog-{fp}.pickle"
    if cache.exists():
        try:
            blob = cache.read_bytes()
            mac, data = blob[:32], blob[32:]
            if hmac.compare_digest(mac, hmac.new(key, data, hashlib.sha256).digest()):
                cat = pickle.loads(data)
                if isinstance(cat, Catalog) and cat.fingerprint == fp:
                    return cat
        except Exception:  # noqa: BLE001 - a stale or foreign cache is rebuilt, never trusted
            pass
    cat = load_catalog(content_dir, runbooks_dir)
    data = pickle.dumps(cat, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(hmac.new(key, data, hashlib.sha256).digest() + data)
    os.replace(tmp, cache)
    for old in cache_dir.glob("catalog-*.pickle"):
        if old != cache:
            old.unlink(missing_ok=True)
    return cat


def _failed(problems: list[Problem], loaded: set[str], kind: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> path of each file with an error that kept it from loading (named by its file)."""
    return {(kind, Path(p.path).stem): p.path for p in problems
            if p.level == "error" and Path(p.path).stem not in loaded}


def load_catalog(content_dir: Path, runbooks_dir: Path, strict: bool = False) -> Catalog:
    """Load and cross-check everything; raise ContentInvalid listing every problem on errors."""
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

    matcher = default_matcher()
    problems += message_problems(entries, matcher.catalog, matcher)
    bad = [p for p in problems if p.level == "error" or (strict and p.level == "warning")]
    if bad:
        raise ContentInvalid(fold_knock_on(bad, broken))
    return Catalog({e.slug: e for e in entries}, runbooks, problems, fingerprint(content_dir, runbooks_dir))
