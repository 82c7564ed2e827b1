"""The one service layer: plain data for the HTML views, the JSON API, chat and the CLI."""

from __future__ import annotations

import functools
import gc
import logging
import re
import threading
from pathlib import Path

from kb.service.catalog import Catalog, cached_matcher, load_catalog_cached, start_matcher_build
from kb.errors import ApiError, BadRequest, NotFound
from kb.knowledge.search import MAX_QUERY_CHARS, Doc, SearchIndex
from kb.messages.catalog import COMPONENT_NAMES, LANGUAGE_NAMES, SOURCES_NOTE
from kb.messages.sources import MAJORS
from kb.settings import Config


def _psycopg_name(code: str) -> str | None:
    """The exception class psycopg 3 raises for a SQLSTATE (psycopg.errors.<Name>), if it has one."""
    try:
        from psycopg import errors
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    try:
        return errors.lookup(code).__name__
    except KeyError:
        return None


log = logging.getLogger("kb")
KIND_NAMES = {"primary": "primary message", "detail": "DETAIL", "hint": "HINT", "setting": "setting description",
              "other": "other text (help text, a heading or a fragment)"}
NO_MATCH = "No known PostgreSQL message in this text"
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


def _browse_text(entry) -> str:
    """What the filter box on /errors matches: the words a row shows, plus slug, messages and tags."""
    m = entry.meta
    return " ".join([m.title, entry.slug, m.engine, m.severity, *m.sqlstate, *m.messages, *m.tags]).casefold()


class Service:
    """Content, search, and (when configured) the run engine of one process."""

    def __init__(self, config: Config, catalog: Catalog):
        self.config = config
        self.catalog = catalog
        index_base = Path(config.index_dir) if config.index_dir else config.instance_path
        self.search = SearchIndex.open_or_build(index_base, catalog.fingerprint,
                                                [entry_doc(e) for e in catalog.entries.values()])
        from kb.messages.catalog import load as load_messages
        from kb.service.finder import Finder

        self.messages = load_messages()
        self.finder = Finder(self.messages, self.search, catalog.entries)
        self._runs = None
        self._store = None
        self._store_lock = threading.Lock()  # (the runs' lock is held while RunService takes the store)
        self._runs_lock = threading.Lock()
        self._warming = 0  # the process warming this service (see warm_in_background)

    @classmethod
    def from_config(cls, config: Config) -> "Service":
        """Load and validate content (raises ContentInvalid), then open or build the index.

        The collector is paused meanwhile (a start makes a few million objects that all live on: each
        collection it would trigger scans them for nothing, a third of a start's time), and what the
        start made is then frozen out of later collections."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            svc = cls._from_config(config)
        finally:
            if enabled:
                gc.enable()
        gc.freeze()
        return svc

    @classmethod
    def _from_config(cls, config: Config) -> "Service":
        from kb.messages.match import default_made, default_matcher

        cache = Path(config.index_dir) if config.index_dir else config.instance_path
        # a first start builds the message matcher in a second process while it loads the content
        building = None if default_made() else start_matcher_build(cache)
        build = functools.partial(cached_matcher, cache, building)
        if building is None:
            # read first, while the process is small: what the read frees is reused by what follows
            default_matcher(build)
        catalog = load_catalog_cached(Path(config.content_dir), Path(config.runbooks_dir), cache, matcher=build)
        default_matcher(build)  # (made by the content's checks, unless the content came from its cache)
        return cls(config, catalog)

    def warm(self, pause: float = 0.0) -> None:
        """Make ahead what searches otherwise make when a paste first needs it: the entries' template
        patterns and the catalog's folded message patterns (about a second of CPU)."""
        self.search.warm()
        self.finder.matcher.warm(pause)
        gc.freeze()  # the patterns live as long as the process: out of later collections' scans

    def warm_in_background(self) -> threading.Thread | None:
        """`warm` in a daemon thread once `kb serve` is up, once per process (a forked worker warms its
        own copy), yielding every 1,000 patterns so requests arriving meanwhile are not held up."""
        import os

        with self._runs_lock:
            if self._warming == os.getpid():
                return None
            self._warming = os.getpid()
        t = threading.Thread(target=self.warm, kwargs={"pause": 0.001}, name="kb-warm", daemon=True)
        t.start()
        return t

    # --- runs (built lazily: pages and search never need a database) -----------------------------
    @property
    def store(self):
        """The run store alone (tokens, sessions, rate limits: what every request's access check reads),
        without the run engine and its database driver, which only runs need."""
        with self._store_lock:
            if self._store is None:
                from kb.runbooks.store import RunStore

                self._store = RunStore(self.config.store_url, self.config.instance_path)
        return self._store

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
        # the entry's messages as the catalog has them, in every language PostgreSQL translates them to
        messages = {m.id: m for m in self.finder.catalog_templates_of(slug)}
        data["translations"] = [
            {"id": m.id, "template": m.template, "kind": m.kind, "url": f"/messages/{m.id}",
             "translations": [{"lang": lang, "language": LANGUAGE_NAMES.get(lang, lang), "forms": forms}
                              for lang, forms in sorted(m.translations.items(),
                                                        key=lambda kv: LANGUAGE_NAMES.get(kv[0], kv[0]))]}
            for m in messages.values()]
        return data

    def _ref(self, slug: str) -> dict:
        e = self.catalog.entries[slug]
        return {"slug": slug, "title": e.meta.title, "url": e.url, "sqlstates": e.meta.sqlstate}

    def entries(self, engine: str | None = None, tag: str | None = None, sqlstate: str | None = None,
                text: str | None = None) -> dict:
        """Entries filtered by engine, tag, SQLSTATE or words, sorted by title, with the facets to browse by."""
        items = sorted(self.catalog.entries.values(), key=lambda e: (e.meta.title.casefold(), e.slug))
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
        words = (text or "").casefold().split()
        if words:
            items = [e for e in items if all(w in _browse_text(e) for w in words)]
        return {"filters": {"engine": engine, "tag": tag, "sqlstate": sqlstate, "text": text or None}, "facets": facets,
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
        out = self.finder.find(text, limit)
        results = []
        for rank, r in enumerate(out["results"]):
            item = self._entry_result(r) if r["kind"] == "entry" else self._message_result(r["found"])
            item["kind"], item["match"] = r["kind"], r["match"]
            item["score"] = round(r.get("score", 1000.0 - rank) if r["match"] == "words" else 1000.0 - rank, 2)
            f = r.get("found")
            if f is not None:
                item["message"] = {"id": f.message.id, "template": f.message.template, "kind": f.message.kind,
                                   "values": f.values, "text": f.text[:500], "url": f"/messages/{f.message.id}"}
                item["lang"] = f.lang
                item["matched"] = f.message.template
            elif r["match"] == "message":
                item["matched"] = r.get("template")
            elif r["match"] == "sqlstate":
                item["matched"] = f"SQLSTATE {r['sqlstate']}"
            else:
                item["matched"] = None
            if r.get("details"):
                item["details"] = r["details"]
            if r["match"] == "related":
                item["of"] = r["of"]
            results.append(item)
        data = {"query": text if len(text) <= 500 else text[:500] + "...", "count": len(results),
                "match": out["state"], "results": results,
                "sqlstates": [self.sqlstate_ref(c) for c in out["sqlstates"]]}
        if out["state"] == "none":
            data["notice"] = NO_MATCH
        return data

    def _entry_result(self, r: dict) -> dict:
        e = self.catalog.entries[r["slug"]]
        snippet = (e.summary or (e.sections["quick-fix"].text if "quick-fix" in e.sections else ""))
        snippet = re.sub(r"\*\*|__|`", "", snippet)  # the plain text of Markdown emphasis and code
        if len(snippet) > 220:
            snippet = snippet[:217].rsplit(" ", 1)[0] + "..."
        return {"slug": e.slug, "title": e.meta.title, "url": e.url, "sqlstates": e.meta.sqlstate,
                "messages": e.meta.messages, "snippet": snippet,
                "summary": f"{e.meta.title}: {snippet}" if snippet else e.meta.title}

    def _message_result(self, f) -> dict:
        m = f.message
        return {"slug": None, "id": m.id, "title": m.template.strip(), "url": f"/messages/{m.id}",
                "sqlstates": self.message_sqlstates(m), "messages": [m.template],
                "snippet": "No entry is written for this message yet; its page shows the template, the versions"
                           " it exists in, its translations and the entries of its SQLSTATE class.",
                "summary": f"{m.template.strip()} (PostgreSQL {COMPONENT_NAMES.get(m.component, m.component)} message;"
                           " no entry yet)"}

    # --- the message catalog ----------------------------------------------------------------------
    def message_sqlstates(self, m) -> list[str]:
        """A message's SQLSTATE where an entry that explains it states exactly one (else unknown)."""
        slug = self.finder.entry_of.get(m.id)
        if slug:
            codes = self.catalog.entries[slug].meta.sqlstate
            if len(codes) == 1:
                return list(codes)
        return []

    def sqlstate_ref(self, code: str) -> dict:
        """A SQLSTATE in brief: code, condition name, class and its name, page."""
        s = self.messages.sqlstates[code]
        return {"code": code, "condition": s.condition, "class": s.class_code, "class_name": s.class_name,
                "url": f"/sqlstates/{code}"}

    def _class_entries(self, classes: set[str], skip: set[str]) -> list[dict]:
        """Entries carrying a SQLSTATE of one of `classes`, but none of `skip`, by title."""
        slugs = {e.slug for e in self.catalog.entries.values() for c in e.meta.sqlstate
                 if c[:2] in classes and e.slug not in skip}
        return sorted((self._ref(s) for s in slugs), key=lambda r: r["title"].lower())

    def message(self, mid: str) -> dict:
        """A catalog message: template, kind, versions, translations, its SQLSTATE and entries."""
        m = self.messages.by_id.get(mid)
        if m is None:
            raise NotFound(f"message {mid!r}")
        codes = self.message_sqlstates(m)
        # every entry that explains it, with the placeholder values that select it, if any (`could not
        # connect to server: %s` is connection-refused for "connection refused" or "no such file or
        # directory", connection-timed-out for "connection timed out"); [] when it explains any text
        when: dict[str, list] = {}
        for slug, fixed in self.finder.explained.get(m.id, ()):
            if slug in self.catalog.entries:
                alternatives = when.setdefault(slug, [])
                values = [{"position": i + 1, "value": v} for i, v in sorted(fixed.items())]
                if alternatives is not None and values and values not in alternatives:
                    alternatives.append(values)
                elif not values:
                    when[slug] = None
        entries = [{**self._ref(slug), "when": alts or []} for slug, alts in when.items()]
        slugs = set(when)
        data = m.as_dict()
        data.update({
            "url": f"/messages/{m.id}",
            "component_name": COMPONENT_NAMES.get(m.component, m.component),
            "kind_name": KIND_NAMES.get(m.kind, m.kind),
            "all_majors": list(MAJORS),
            # the npm builds of 13, 14, 16 and 17 ship no psql binary: its other versions are unknown
            "versions_known": [15, 18] if m.component == "psql" else list(MAJORS),
            "entry": self._ref(entries[0]["slug"]) if entries else None,
            "entries": entries,
            "sqlstates": [self.sqlstate_ref(c) for c in codes if c in self.messages.sqlstates],
            "class_entries": self._class_entries({c[:2] for c in codes}, slugs),
            "translations": [{"lang": lang, "language": LANGUAGE_NAMES.get(lang, lang), "forms": forms}
                             for lang, forms in sorted(m.translations.items(),
                                                       key=lambda kv: LANGUAGE_NAMES.get(kv[0], kv[0]))],
            "sources": SOURCES_NOTE,
            "note": None if entries else "No entry is written for this message yet.",
        })
        return data

    def _sqlstate_messages(self) -> dict[str, list[str]]:
        """Catalog message ids by the SQLSTATE they are known to carry (message_sqlstates)."""
        out: dict[str, list[str]] = {}
        for mid in self.finder.entry_of:
            for code in self.message_sqlstates(self.messages.by_id[mid]):
                out.setdefault(code, []).append(mid)
        return out

    def sqlstates(self) -> dict:
        """Every SQLSTATE of errcodes.txt, by class, with the entries and messages that carry each."""
        classes: dict[str, dict] = {}
        by_code = self._sqlstate_messages()
        for code, s in sorted(self.messages.sqlstates.items()):
            c = classes.setdefault(s.class_code, {"class": s.class_code, "class_name": s.class_name,
                                                  "url": f"/sqlstates#class-{s.class_code}", "sqlstates": []})
            c["sqlstates"].append({**s.as_dict(), "majors": sorted(set(s.majors)), "url": f"/sqlstates/{code}",
                                   "psycopg": _psycopg_name(code),
                                   "entries": [self._ref(x) for x in self.finder.sqlstate_entries.get(code, [])],
                                   "message_count": len(by_code.get(code, []))})
        return {"count": len(self.messages.sqlstates), "class_count": len(classes),
                "entry_count": sum(1 for e in self.catalog.entries.values() if e.meta.sqlstate),
                "classes": list(classes.values()), "all_majors": list(MAJORS),
                "sources": "errcodes.txt of PostgreSQL 13-18; psycopg.errors for the exception classes"}

    def sqlstate(self, code: str) -> dict:
        """One SQLSTATE: class, condition, psycopg's exception, the entries and messages carrying it."""
        s = self.messages.sqlstates.get(code)
        if s is None:
            raise NotFound(f"SQLSTATE {code!r}")
        slugs = self.finder.sqlstate_entries.get(code, [])
        messages = []
        for mid in self._sqlstate_messages().get(code, []):
            m = self.messages.by_id[mid]
            messages.append({"id": m.id, "template": m.template, "kind": m.kind, "url": f"/messages/{m.id}",
                             "entry": self.finder.entry_of[m.id]})
        messages.sort(key=lambda x: (x["entry"], x["template"].lower()))
        cls = self.messages.sqlstates.get(s.class_code + "000")
        return {**s.as_dict(), "majors": sorted(set(s.majors)), "url": f"/sqlstates/{code}",
                "psycopg": _psycopg_name(code), "class_condition": cls.condition if cls else None,
                "class_url": f"/sqlstates#class-{s.class_code}",
                "entries": [self._ref(x) for x in slugs],
                "class_entries": self._class_entries({s.class_code}, set(slugs)),
                "messages": messages, "all_majors": list(MAJORS),
                "sources": "errcodes.txt of PostgreSQL 13-18 (the file the server's SQLSTATE macros and PL/pgSQL's "
                           "condition names are generated from); psycopg.errors for the exception class"}

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
