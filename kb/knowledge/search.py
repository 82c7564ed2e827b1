"""Owns Whoosh: builds the on-disk index once per content fingerprint and answers error searches.

Ranking has two tiers. Exact evidence first: a message template whose tokens appear in order in the
normalised paste (found through an in-memory anchor table, so long pastes cost one dict lookup per
distinct token), or a SQLSTATE the entry covers. Prose second: a BM25F query over short fields.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from itertools import accumulate, islice
from dataclasses import dataclass
from pathlib import Path

import ahocorasick_rs
from whoosh import index as windex
from whoosh.analysis import LowercaseFilter, SpaceSeparatedTokenizer, StemFilter, StemmingAnalyzer, STOP_WORDS
from whoosh.fields import ID, KEYWORD, TEXT, Schema
from whoosh.query import Term
from whoosh.scoring import bm25

from kb.knowledge.normalize import HOST, NUMBER, QUOTED, VAR, normalize_text, sqlstates_in, template_regex, template_tokens

MAX_QUERY_CHARS = 32_768
TEMPLATE_BONUS = 1000.0
CONTAINED_BONUS = 300.0  # a template whose match lies inside a longer template's match
SQLSTATE_BONUS = 200.0
PROSE_CAP = 150.0
MAX_QUERY_TERMS = 16
# distinct words of a paste the prose query picks its terms from (the first ones, in paste order): each
# new word costs a Porter stem (about 15 us), so a 32 KB paste of novel words is bounded to ~10 ms
MAX_PROSE_WORDS = 600
CACHE_BYTES = 8 * 1024 * 1024  # per process; an entry costs a digest and its ranked list
SERVER_SIDE_BONUS = 15.0
COMPANION_SCORE = 100.0
_PLACEHOLDERS = {QUOTED, NUMBER, HOST, VAR}
_WORD_CHARS = re.compile(r"\w+")  # one token to the prose analyzer's tokenizer (\w+(\.?\w+)*)


# Estimated bytes of one cached result: the key, the OrderedDict slot and the tuple, then per hit its
# dict and the score (strings are counted by length). Measured with tracemalloc in tests/test_search.py.
_CACHE_ENTRY_BYTES = 300
_CACHE_HIT_BYTES = 400


def _windows(at: list[int], reach: int, n: int) -> list[tuple[int, int]]:
    """Merged token ranges within `reach` of each position in `at` (ascending)."""
    out: list[tuple[int, int]] = []
    for i in at:
        lo, hi = max(0, i - reach), min(n, i + reach + 1)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _hold(path: Path) -> int:
    """A shared lock on `path`, created if missing; retried when a remover unlinked it meanwhile."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_unused(index_dir: Path) -> None:
    """Delete an index no process holds; leave it when one does."""
    lock = index_dir.with_name(f"{index_dir.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return
    try:
        shutil.rmtree(index_dir, ignore_errors=True)
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _schema() -> Schema:
    plain = SpaceSeparatedTokenizer() | LowercaseFilter()
    return Schema(
        slug=ID(stored=True, unique=True),
        tmpl=TEXT(analyzer=plain, field_boost=4.0),
        title=TEXT(analyzer=plain, field_boost=2.0),
        sqlstate=KEYWORD(lowercase=False),
        tags=KEYWORD(lowercase=True, field_boost=1.5),
        prose=TEXT(analyzer=StemmingAnalyzer()),
    )


@dataclass
class Doc:
    """What the index needs of one entry."""

    slug: str
    title: str
    messages: list[str]
    sqlstates: list[str]
    tags: list[str]
    prose: str
    server_side: bool = True  # the server's own message, not a client library's report of it
    related: tuple[str, ...] = ()


@dataclass
class _Template:
    slug: str
    message: str
    tokens: list[str]
    literal_count: int
    reach: int  # the most paste tokens a match can span
    words: frozenset = frozenset()  # its literal words: a paste lacking one cannot match
    _regex: object = None

    @property
    def regex(self):
        """Compiled when a paste first holds all its words (compiling the 700 at start took 0.4 s)."""
        if self._regex is None:
            self._regex = template_regex(self.tokens)  # the same pattern whichever thread wins
        return self._regex


class SearchIndex:
    """An opened index plus the template anchor table; thread-safe for concurrent searches."""

    def __init__(self, index_dir: Path, docs: list[Doc], cache_bytes: int = CACHE_BYTES, lock_fd: int | None = None):
        self.index_dir = index_dir
        self._lock_fd = lock_fd  # a shared lock on the index, held while this object lives
        self.cache_bytes = cache_bytes
        self._cache_used = 0
        self._ix = windex.open_dir(str(index_dir))
        self._local = threading.local()
        self._sqlstates: dict[str, list[str]] = {}
        self._templates: list[_Template] = []
        self._anchors: dict[str, list[int]] = {}
        self._build_tables(docs)
        self._uncovered = self._anchors  # the anchor table of templates no other matcher finds (see cover)
        with self._ix.reader() as reader:
            # each field's terms with their document frequency, read once: a paste's candidate terms
            # are ranked by it, and a Whoosh lookup per new term costs 50 us
            self._lexicon = {f: {t.decode() if isinstance(t, bytes) else t: info.doc_frequency()
                                 for t, info in reader.iter_field(f)}
                             for f in ("tmpl", "title", "prose", "tags")}
        self._stem = self._ix.schema["prose"].analyzer
        # the analyzer's own cached Porter stemmer, for a paste's words: each is one lowercase run of
        # word characters, which the analyzer's tokenizer and filters hand to it unchanged (cover a
        # 32 KB paste's 2,000 distinct words with the whole chain and it costs 20 ms)
        self._stem_word = next(f._stem for f in self._stem.items if isinstance(f, StemFilter) and not f.ignore)
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        self._df_cap = max(50, len(docs) // 20)  # terms in more entries than this carry no signal
        # the statistics Whoosh's BM25F reads per document, once (see _bm25f)
        with self._ix.searcher() as searcher:
            n = searcher.doc_count_all()
            self._slugs = [searcher.stored_fields(d)["slug"] for d in range(n)]
            self._scorable = {f: self._ix.schema[f].scorable for f in ("tmpl", "title", "prose", "tags")}
            self._avgfl = {f: searcher.avg_field_length(f) or 1 for f, ok in self._scorable.items() if ok}
            self._lengths = {f: [searcher.doc_field_length(d, f, 1) for d in range(n)] for f in self._avgfl}
        self._postings: dict[tuple[str, str], tuple[float, tuple]] = {}  # (field, term) -> (idf, ((doc, weight), ...))

    # --- building -----------------------------------------------------------------------------
    @classmethod
    def open_or_build(cls, base_dir: Path, fingerprint: str, docs: list[Doc], cache_bytes: int = CACHE_BYTES) -> "SearchIndex":
        """Reuse `base_dir/index-<fingerprint>` when it exists, else build it atomically.

        Every process holds a shared lock on the index it searches, so another process (`kb index`,
        or a server started after a content change) removes an older index only when nobody holds
        it; an index in use stays until its last user ends.
        """
        base_dir.mkdir(parents=True, exist_ok=True)
        target = base_dir / f"index-{fingerprint}"
        lock_fd = _hold(base_dir / f"{target.name}.lock")
        if not (target / "READY").exists():
            tmp = Path(tempfile.mkdtemp(prefix="build-", dir=base_dir))
            ix = windex.create_in(str(tmp), _schema())
            writer = ix.writer(limitmb=256)
            for d in docs:
                writer.add_document(
                    slug=d.slug,
                    tmpl=" ".join(t for m in d.messages for t in template_tokens(m) if t not in _PLACEHOLDERS),
                    title=" ".join(normalize_text(d.title)),
                    sqlstate=" ".join(d.sqlstates),
                    tags=" ".join(d.tags),
                    prose=d.prose,
                )
            writer.commit()
            (tmp / "READY").write_text(fingerprint)
            try:
                os.rename(tmp, target)
            except OSError:  # another process built it first
                shutil.rmtree(tmp, ignore_errors=True)
        for old in base_dir.glob("index-*"):
            if old.name != target.name and old.is_dir() and (old / "READY").exists():
                _remove_unused(old)
        return cls(target, docs, cache_bytes, lock_fd)

    def close(self) -> None:
        """Release the index for removal by a newer one."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _build_tables(self, docs: list[Doc]) -> None:
        self._server_side = {d.slug for d in docs if d.server_side}
        self._related = {d.slug: d.related for d in docs}
        freq: dict[str, int] = {}
        parsed = []
        for d in docs:
            for code in d.sqlstates:
                self._sqlstates.setdefault(code, []).append(d.slug)
            for m in d.messages:
                toks = template_tokens(m)
                literals = [t for t in toks if t not in _PLACEHOLDERS]
                parsed.append((d.slug, m, toks, literals))
                for t in set(literals):
                    freq[t] = freq.get(t, 0) + 1
        for slug, message, toks, literals in parsed:
            if not literals:  # template_regex would have nothing to match: all placeholders
                continue
            anchor = min(set(literals), key=lambda t: (freq[t], t))
            self._anchors.setdefault(anchor, []).append(len(self._templates))
            reach = sum(1 if t not in _PLACEHOLDERS else 6 for t in toks)
            self._templates.append(_Template(slug, message, toks, len(literals), reach, frozenset(literals)))

    def cover(self, messages: set[str]) -> None:
        """Name the templates another matcher finds on its own (the message catalog's): searches with
        `uncovered=True` look for the others only (poolers', drivers', older majors' wordings)."""
        self._uncovered = {}
        for anchor, idxs in self._anchors.items():
            keep = [i for i in idxs if self._templates[i].message not in messages]
            if keep:
                self._uncovered[anchor] = keep
        # their anchors in one automaton: whether a paste holds any is one pass (see _may_hold)
        self._uncovered_scan = ahocorasick_rs.AhoCorasick(list(self._uncovered)) if self._uncovered else None

    def warm(self) -> None:
        """Compile every entry template's pattern ahead of the first paste holding its words."""
        for t in self._templates:
            t.regex

    # --- searching ----------------------------------------------------------------------------
    def _searcher(self):
        s = getattr(self._local, "searcher", None)
        if s is None:
            s = self._local.searcher = self._ix.searcher()
        return s

    def template_hits(self, tokens: list[str], uncovered: bool = False) -> dict[str, tuple[str, int, tuple[int, int]]]:
        """slug -> (message, literal count, span) of the most specific template found in the tokens.

        A match contains its template's anchor and spans at most `reach` tokens, so each template is
        searched only in the windows around its anchor's occurrences: a paste made of every
        template's words costs what its windows cost, not one scan of the whole paste per template.
        Spans are character offsets in the space-joined tokens. `uncovered`: only the templates `cover`
        did not name.
        """
        anchors = self._uncovered if uncovered else self._anchors
        present = set(tokens)
        wanted = present.intersection(anchors)
        if not wanted:
            return {}
        where: dict[str, list[int]] = {}
        for i, tok in enumerate(tokens):
            if tok in wanted:
                where.setdefault(tok, []).append(i)
        starts = list(accumulate((len(tok) + 1 for tok in tokens), initial=1))
        found: dict[str, tuple[str, int, tuple[int, int]]] = {}
        for tok, at in where.items():
            for idx in anchors.get(tok, ()):
                t = self._templates[idx]
                if t.slug in found and found[t.slug][1] >= t.literal_count:
                    continue  # a template of this entry as specific is found already
                if not t.words <= present:
                    continue
                for lo, hi in _windows(at, t.reach, len(tokens)):
                    m = t.regex.search(" " + " ".join(tokens[lo:hi]) + " ")
                    if m:
                        span = (m.start() + starts[lo] - 1, m.end() + starts[lo] - 1)
                        if t.slug not in found or found[t.slug][1] < t.literal_count:
                            found[t.slug] = (t.message, t.literal_count, span)
                        break
        return found

    def prose_hits(self, tokens: list[str], limit: int) -> dict[str, float]:
        """BM25F scores over the short fields, for the paste's rarest words the index knows.

        Whoosh unions every posting of every term, so cost grows with document frequency: words that
        most entries share say little and are left out, and only the rarest terms are queried.
        """
        candidates = []
        for tok in islice(dict.fromkeys(tokens), MAX_PROSE_WORDS):  # each distinct word once, in paste order
            if tok in _PLACEHOLDERS or tok in STOP_WORDS or len(tok) < 2:
                continue
            for field in ("tmpl", "title", "tags"):
                if tok in self._lexicon[field]:
                    candidates.append((field, tok))
            if _WORD_CHARS.fullmatch(tok) and tok.lower() == tok:
                stems = [self._stem_word(tok)]
            else:
                stems = [t.text for t in self._stem(tok)]
            for stemmed in stems:
                if stemmed in self._lexicon["prose"]:
                    candidates.append(("prose", stemmed))
        if not candidates:
            return {}
        scored = sorted((self._lexicon[f][t], f, t) for f, t in set(candidates))
        terms = [Term(f, t) for df, f, t in scored if df <= self._df_cap][:MAX_QUERY_TERMS]
        if not terms:
            return {}
        return self._bm25f(terms, limit)

    def _bm25f(self, terms: list[Term], limit: int) -> dict[str, float]:
        """slug -> score of the top `limit` entries for the union of `terms` (an Or query), as Whoosh's
        searcher ranks them with its default BM25F (B 0.75, K1 1.2; a field that is not scorable scores its
        posting weight), in the same order (score, then document number). Scored here from each
        term's postings, read once: the index holds a few hundred entries, and Whoosh's matcher tree
        cost about 2 ms per query where these sums cost a tenth of that (tests/test_search.py checks
        the two agree)."""
        scores: dict[int, float] = {}
        for term in terms:
            field, text = term.fieldname, term.text
            idf, postings = self._term_postings(field, text)
            if self._scorable[field]:
                avgfl, lengths = self._avgfl[field], self._lengths[field]
                for doc, weight in postings:
                    scores[doc] = scores.get(doc, 0.0) + bm25(idf, weight, lengths[doc], avgfl, 0.75, 1.2)
            else:
                for doc, weight in postings:
                    scores[doc] = scores.get(doc, 0.0) + weight
        top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return {self._slugs[doc]: score for doc, score in top}

    def _term_postings(self, field: str, text: str) -> tuple[float, tuple]:
        key = (field, text)
        got = self._postings.get(key)
        if got is None:  # the lexicon's terms only: bounded by the index, not by pastes
            searcher = self._searcher()
            got = self._postings[key] = (searcher.idf(field, text),
                                         tuple(searcher.postings(field, text).items_as("weight")))
        return got

    def search(self, text: str, limit: int = 10, prose: bool = True, uncovered: bool = False) -> list[dict]:
        """Ranked hits: [{slug, score, matched}] with exact evidence far above prose (prose=False: exact
        evidence only, without the BM25 query, for a caller that has found the paste's messages already;
        uncovered=True: of the templates only those `cover` did not name).

        Results are cached by the normalised paste, so the same error pasted again with another
        timestamp, PID, host or identifier (what an incident channel does) costs one dict lookup.
        """
        if uncovered and not prose and not self._may_hold(text):
            return []  # no anchor of these templates is in the paste, so none of them is
        tokens = normalize_text(text)
        codes = [c for c in sqlstates_in(text) if c in self._sqlstates]
        if not self.cache_bytes:
            return self._rank(tokens, codes, limit, prose, uncovered)
        key = hashlib.blake2b("\0".join([*tokens, "", *codes, str(limit), str(prose), str(uncovered)]).encode(),
                              digest_size=16).digest()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return [dict(h) for h in hit[0]]
        ranked = self._rank(tokens, codes, limit, prose, uncovered)
        size = _CACHE_ENTRY_BYTES + sum(_CACHE_HIT_BYTES + len(h["slug"]) + len(h["matched"] or "") for h in ranked)
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = (ranked, size)
                self._cache_used += size
            while self._cache_used > self.cache_bytes and self._cache:
                self._cache_used -= self._cache.popitem(last=False)[1][1]
        return [dict(h) for h in ranked]

    def cache_footprint(self) -> tuple[int, int]:
        """(entries, estimated bytes) held by the result cache."""
        with self._cache_lock:
            return len(self._cache), self._cache_used

    def _may_hold(self, text: str) -> bool:
        """Whether some uncovered template's anchor occurs in the paste at all. Every word of the
        normalised paste is a piece of the lowercased paste (placeholders aside), so a template whose
        anchor is not a substring cannot match: one automaton pass, before the paste is normalised."""
        if self._uncovered is self._anchors:  # cover was not called: every template is looked for
            return True
        return self._uncovered_scan is not None and bool(self._uncovered_scan.find_matches_as_indexes(text.lower()))

    def _rank(self, tokens: list[str], codes: list[str], limit: int, prose: bool = True,
              uncovered: bool = False) -> list[dict]:
        templates = self.template_hits(tokens, uncovered)
        scores: dict[str, float] = {}
        matched: dict[str, str | None] = {}
        spans = {slug: v[2] for slug, v in templates.items()}
        for slug, (message, literal_count, span) in templates.items():
            inside = any(o != slug and o_span[0] <= span[0] and span[1] <= o_span[1] and o_span != span
                         for o, o_span in spans.items())
            scores[slug] = (CONTAINED_BONUS if inside else TEMPLATE_BONUS) + 10.0 * literal_count
            if slug in self._server_side:  # in a paste with several errors, the server's cause before its echoes
                scores[slug] += SERVER_SIDE_BONUS
            scores[slug] -= span[0] * 1e-4  # then the error that comes first in the paste
            matched[slug] = message
        for code in codes:
            for slug in self._sqlstates[code]:
                scores[slug] = scores.get(slug, 0.0) + SQLSTATE_BONUS
                matched.setdefault(slug, f"SQLSTATE {code}")
        if templates:
            # Exact evidence decides; BM25 over prose would only add cost. The rest of the list is
            # the matched entries' companion errors, which their authors chose.
            for rank, slug in enumerate(sorted(templates, key=lambda s: -scores[s])):
                for i, rel in enumerate(self._related.get(slug, ())):
                    if rel not in scores:
                        scores[rel] = COMPANION_SCORE - rank - i * 0.01
                        matched[rel] = None
        elif prose:
            for slug, score in self.prose_hits(tokens, limit=max(limit, 20)).items():
                scores[slug] = scores.get(slug, 0.0) + min(score, PROSE_CAP)
                matched.setdefault(slug, None)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [{"slug": s, "score": round(sc, 2), "matched": matched[s]} for s, sc in ranked]
