"""The loaded content of one deploy: entries and runbooks, validated together."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from kb.knowledge.loader import cross_check, load_entries
from kb.knowledge.model import Entry
from kb.errors import ContentInvalid
from kb.knowledge.problems import Problem


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
                 "knowledge/problems.py", "runbooks/model.py", "runbooks/loader.py", "service/catalog.py")


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


def load_catalog_cached(content_dir: Path, runbooks_dir: Path, cache_dir: Path) -> Catalog:
    """load_catalog, reusing a pickle of the last valid load while the content's fingerprint is the same."""
    fp = fingerprint(content_dir, runbooks_dir)
    cache = cache_dir / f"catalog-{fp}.pickle"
    if cache.exists():
        try:
            with cache.open("rb") as fh:
                cat = pickle.load(fh)
            if isinstance(cat, Catalog) and cat.fingerprint == fp:
                return cat
        except Exception:  # noqa: BLE001 - a stale or foreign cache is rebuilt, never trusted
            pass
    cat = load_catalog(content_dir, runbooks_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(cat, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, cache)
    for old in cache_dir.glob("catalog-*.pickle"):
        if old != cache:
            old.unlink(missing_ok=True)
    return cat


def load_catalog(content_dir: Path, runbooks_dir: Path, strict: bool = False) -> Catalog:
    """Load and cross-check everything; raise ContentInvalid listing every problem on errors."""
    from kb.runbooks.loader import check_runbooks_against_entries, load_runbooks

    problems: list[Problem] = []
    if not content_dir.is_dir():
        raise ContentInvalid([Problem(str(content_dir), 0, "content_dir", "folder not found")])
    entries, found = load_entries(content_dir)
    problems += found
    runbooks, found = load_runbooks(runbooks_dir)
    problems += found
    problems += cross_check(entries, set(runbooks))
    problems += check_runbooks_against_entries(runbooks, {e.slug: e for e in entries})
    bad = [p for p in problems if p.level == "error" or (strict and p.level == "warning")]
    if bad:
        raise ContentInvalid(bad)
    return Catalog({e.slug: e for e in entries}, runbooks, problems, fingerprint(content_dir, runbooks_dir))
