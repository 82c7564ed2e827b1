"""The one service layer: plain data for the HTML views, the JSON API, chat and the CLI."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from kb.service.catalog import Catalog, load_catalog_cached
from kb.errors import ApiError, BadRequest, NotFound
from kb.knowledge.search import MAX_QUERY_CHARS, Doc, SearchIndex
from kb.settings import Config

log = logging.getLogger("kb")
ENGINE_ORDER = {"postgresql": 0, "pgbouncer": 1}  # the server first, then the pooler, then drivers A-Z


def entry_doc(entry) -> Doc:
    """What the search index needs of an entry: prose is the summary, quick fix and causes."""
    parts = [entry.summary]
    for key in ("quick-fix", "causes"):
        if key in entry.sections:
            parts.append(entry.sections[key].text)
    prose = " ".join(" ".join(parts).split()[:120])
    return Doc(entry.slug, entry.meta.title, entry.meta.messages, entry.meta.sqlstate, entry.meta.tags, prose,
               server_side=entry.meta.level != "client", related=tuple(entry.meta.related))


class Service:
    """Content, search, and (when configured) the run engine of one process."""

    def __init__(self, config: Config, catalog: Catalog):
        self.config = config
        self.catalog = catalog
        index_base = Path(config.index_dir) if config.index_dir else config.instance_path
        self.search = SearchIndex.open_or_build(index_base, catalog.fingerprint,
                                                [entry_doc(e) for e in catalog.entries.values()])
        self._runs = None
        self._runs_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> "Service":
        """Load and validate content (raises ContentInvalid), then open or build the index."""
        cache = Path(config.index_dir) if config.index_dir else config.instance_path
        catalog = load_catalog_cached(Path(config.content_dir), Path(config.runbooks_dir), cache)
        return cls(config, catalog)

    # --- runs (built lazily: pages and search never need a database) -----------------------------
    @property
    def runs(self):
        with self._runs_lock:  # one RunService (and one set of target pools) per process
            if self._runs is None:
                from kb.runbooks.service import RunService

                self._runs = RunService(self.config, self.catalog, self)
        return self._runs

    # --- entries ---------------------------------------------------------------------------------
    def entry(self, slug: str) -> dict:
        """An entry, fully structured, with its companions and runbooks resolved."""
        e = self.catalog.entries.get(slug)
        if e is None:
            raise NotFound(f"entry {slug!r}")
        data = e.as_dict()
        data["related"] = [self._ref(s) for s in e.meta.related if s in self.catalog.entries]
        data["runbooks"] = [{"id": r, "title": self.catalog.runbooks[r].title, "url": f"/runbooks/{r}"}
                            for r in e.meta.runbooks if r in self.catalog.runbooks]
        return data

    def _ref(self, slug: str) -> dict:
        e = self.catalog.entries[slug]
        return {"slug": slug, "title": e.meta.title, "url": e.url, "sqlstates": e.meta.sqlstate}

    def entries(self, engine: str | None = None, tag: str | None = None, sqlstate: str | None = None) -> dict:
        """Entries filtered by engine, tag or SQLSTATE, with the facets to browse by."""
        items = list(self.catalog.entries.values())
        facets = {
            "engines": sorted({e.meta.engine for e in items}, key=lambda n: (ENGINE_ORDER.get(n, 9), n)),
            "tags": sorted({t for e in items for t in e.meta.tags}),
            "sqlstates": sorted({c for e in items for c in e.meta.sqlstate}),
        }
        for value, facet, key in ((engine, "engines", "engine"), (tag, "tags", "tag"), (sqlstate, "sqlstates", "sqlstate")):
            if value is not None and value not in facets[facet]:
                raise BadRequest(f"unknown {key} {value!r}", [{"field": key, "reason": f"one of: {', '.join(facets[facet])}"}])
        if engine:
            items = [e for e in items if e.meta.engine == engine]
        if tag:
            items = [e for e in items if tag in e.meta.tags]
        if sqlstate:
            items = [e for e in items if sqlstate in e.meta.sqlstate]
        return {"filters": {"engine": engine, "tag": tag, "sqlstate": sqlstate}, "facets": facets,
                "count": len(items), "entries": [e.as_dict(full=False) for e in items]}

    # --- search ----------------------------------------------------------------------------------
    def search_text(self, text: str, limit: int = 10) -> dict:
        """Ranked entries for pasted error text; raises BadRequest/ApiError on empty or huge input."""
        if text is None or not text.strip():
            raise BadRequest("empty query: paste an error message", [{"field": "q", "reason": "must not be empty"}])
        if len(text) > MAX_QUERY_CHARS:
            raise ApiError(413, f"query is {len(text)} characters; the limit is {MAX_QUERY_CHARS}",
                           [{"field": "q", "reason": f"at most {MAX_QUERY_CHARS} characters"}])
        if not 1 <= limit <= 50:
            raise BadRequest("limit must be between 1 and 50", [{"field": "limit", "reason": "1..50"}])
        results = []
        for hit in self.search.search(text, limit=limit):
            e = self.catalog.entries[hit["slug"]]
            snippet = (e.summary or (e.sections["quick-fix"].text if "quick-fix" in e.sections else "")).replace("`", "")
            if len(snippet) > 220:
                snippet = snippet[:217].rsplit(" ", 1)[0] + "..."
            results.append({
                "slug": e.slug, "title": e.meta.title, "url": e.url, "score": hit["score"],
                "sqlstates": e.meta.sqlstate, "messages": e.meta.messages, "snippet": snippet,
                "matched": hit["matched"],
                "summary": f"{e.meta.title}: {snippet}" if snippet else e.meta.title,
            })
        return {"query": text if len(text) <= 500 else text[:500] + "...", "count": len(results), "results": results}

    # --- runbooks --------------------------------------------------------------------------------
    def runbook(self, rid: str) -> dict:
        """A runbook with its steps and parameters."""
        rb = self.catalog.runbooks.get(rid)
        if rb is None:
            raise NotFound(f"runbook {rid!r}")
        data = rb.as_dict()
        data["entries"] = [self._ref(s) for s in rb.entries if s in self.catalog.entries]
        return data

    def runbooks(self) -> dict:
        """Every runbook, briefly."""
        items = [{"id": rb.id, "title": rb.title, "summary": rb.summary, "url": f"/runbooks/{rb.id}",
                  "target_kind": rb.target_kind, "entries": rb.entries}
                 for rb in sorted(self.catalog.runbooks.values(), key=lambda r: r.id)]
        return {"count": len(items), "runbooks": items}
