"""Finds the catalog's messages in pasted text, in any language the catalog has, in time linear in the paste.

1. Fold the paste and every template the same way (`fold`): lower case, typographic quotes as ASCII
   quotes, JSON and CSV escapes undone (`\\"`, `""`, `\\n`), whitespace runs as one space (or one
   newline when they hold one). An offset map leads back from the folded text to the paste, so
   placeholder values are reported as the paste has them.
2. Each template (English or translated form) is cut at its printf conversions into literal fragments;
   one fragment per template, the one fewest templates share, is its anchor. All anchors sit in one
   Aho-Corasick automaton (ahocorasick-rs), so one pass over the paste, independent of the number
   of templates and working for scripts without spaces (Japanese, Chinese), yields every candidate.
3. Each candidate template is verified with its whole pattern (RE2: linear time, every placeholder a
   bounded group) in a window around its anchor. Too generic templates (`kinds.is_generic`) are not
   in the automaton at all; short ones (`_weak`) count only after a severity word (`ERROR:`,
   `FEHLER:`, `ОШИБКА:`, `psql: error:` ...), before a `(SQLSTATE xxxxx)`, or alone on their line,
   because a phrase such as `out of memory` is also what other programs print.

Hostile input is bounded: at most MAX_VERIFY verifications per paste, each on a bounded window.
"""

from __future__ import annotations

import bisect
import functools
import re
import sys
import threading
import time
from dataclasses import dataclass, field

import ahocorasick_rs

from kb.messages.catalog import Message, MessageCatalog
from kb.messages.formats import CONVERSION

MAX_VERIFY = 5000       # candidate verifications per paste; a real paste needs a few dozen
GRAM = 10              # anchor length: 10 characters keep the automaton near 11 MB for 85,000 patterns (16: 25 MB, built in twice the time)
MAX_VALUE = 300         # characters one placeholder may hold
LEADING_VALUE = 80      # characters a leading placeholder may hold (back to the line's start or a ": ")

COMPONENT_ORDER = {"postgres": 0, "libpq": 1, "plpgsql": 2, "psql": 3}

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                         "\u00ab": '"', "\u00bb": '"', "\u00a0": " ", "\u3000": " "})
# Linear: each alternative is a fixed string or a run of one class.
_SPECIAL = re.compile(r'\s+|\\[nrt"]')
# The same places less a lone space (left as it is): a run of whitespace and escapes folds to one
# separator. Linear: every alternative is a fixed string or a run of one class.
_CHANGES = re.compile(r'\\"|(?:\s|\\[nrt]){2,}|[^\S ]|\\[nrt]')
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_LETTERS = re.compile(r"[^\W\d_]")


def _fold_piece(s: str) -> str:
    low = s.lower()
    return (low if len(low) == len(s) else "".join(c.lower() if len(c.lower()) == 1 else c for c in s)).translate(_QUOTES)


@functools.lru_cache(maxsize=4)
def fold(text: str) -> tuple[str, list[int], list[int]]:
    """(folded text, folded segment starts, original offsets of those starts). The last few pastes
    folded are kept, as a search folds its paste for the matcher and again for the entries'
    templates: the lists are shared, read them, never change them."""
    return _fold(text)


def _fold(text: str) -> tuple[str, list[int], list[int]]:
    """One pass over the places folding changes (whitespace other than a lone space, and the escapes
    \\n \\r \\t \\"), the text between them lowercased at once; the piece by piece pass where a
    character's lowercase form is longer than it (İ)."""
    low = text.lower()
    if len(low) != len(text):
        return _fold_pieces(text)
    base = low.translate(_QUOTES)
    out: list[str] = []
    fstarts: list[int] = []
    ostarts: list[int] = []
    pos = last = 0
    for m in _CHANGES.finditer(text):
        start, end = m.span()
        if start > last:
            fstarts.append(pos)
            ostarts.append(last)
            out.append(base[last:start])
            pos += start - last
        tok = m.group(0)
        if tok == '\\"':
            rep = '"'
        else:
            rep = "\n" if ("\n" in tok or "\r" in tok or "\\n" in tok or "\\r" in tok) else " "
        fstarts.append(pos)
        ostarts.append(start)
        out.append(rep)
        pos += 1
        last = end
    if last < len(text):
        fstarts.append(pos)
        ostarts.append(last)
        out.append(base[last:])
    return "".join(out), fstarts, ostarts


def _fold_pieces(text: str) -> tuple[str, list[int], list[int]]:
    out: list[str] = []
    fstarts: list[int] = []
    ostarts: list[int] = []
    pos = 0  # length of the folded text so far
    last = 0
    for m in _SPECIAL.finditer(text):
        if m.start() > last:
            piece = _fold_piece(text[last:m.start()])
            fstarts.append(pos)
            ostarts.append(last)
            out.append(piece)
            pos += len(piece)
        tok = m.group(0)
        if tok == '\\"':
            rep = '"'
        elif tok in ("\\n", "\\r"):
            rep = "\n"
        elif tok == "\\t":
            rep = " "
        else:
            rep = "\n" if ("\n" in tok or "\r" in tok) else " "
        if rep in (" ", "\n") and out and out[-1] in (" ", "\n"):
            if rep == "\n":
                out[-1] = "\n"
        else:
            fstarts.append(pos)
            ostarts.append(m.start())
            out.append(rep)
            pos += 1
        last = m.end()
    if last < len(text):
        fstarts.append(pos)
        ostarts.append(last)
        out.append(_fold_piece(text[last:]))
    return "".join(out), fstarts, ostarts


def _orig(fpos: int, fstarts: list[int], ostarts: list[int], end: bool = False) -> int:
    """The paste offset of folded offset `fpos` (for an end offset, just after the character before it)."""
    if end:
        if fpos <= 0:
            return 0
        i = bisect.bisect_right(fstarts, fpos - 1) - 1
        return ostarts[i] + (fpos - 1 - fstarts[i]) + 1 if i >= 0 else fpos
    i = bisect.bisect_right(fstarts, fpos) - 1
    return ostarts[i] + (fpos - fstarts[i]) if i >= 0 else fpos


@functools.lru_cache(maxsize=8192)
def fold_template(template: str) -> str:
    return _fold(template.strip())[0].strip()


def _parts(folded: str) -> list[tuple[str, str]]:
    """[('lit', text) | ('conv', conversion)] of a folded template; `%%` is literal."""
    out: list[tuple[str, str]] = []
    last = 0
    for m in CONVERSION.finditer(folded):
        if m.group(1) == "%":
            continue
        if m.start() > last:
            out.append(("lit", folded[last:m.start()].replace("%%", "%")))
        out.append(("conv", m.group(0)))
        last = m.end()
    if last < len(folded):
        out.append(("lit", folded[last:].replace("%%", "%")))
    return out


def _value_ok(conv: str, value: str) -> bool:
    c = conv[-1]
    if not value:
        return c in "sm"  # an empty string prints as "" 
    if c in "diu":
        return value.lstrip("-").isdigit() and len(value) <= 21
    if c in "xX":
        return all(ch in "0123456789abcdef" for ch in value) and len(value) <= 16
    if c in "eEfFgGaA":
        return value[0] in "-0123456789" and all(ch in "0123456789.e+-" for ch in value) and len(value) <= 32
    if c == "c":
        return len(value) == 1
    return "\n" not in value


def verify(text: str, parts: list[tuple[str, str]], k: int, at: int) -> tuple[int, int, list[tuple[int, int]]] | None:
    """Whether the template whose part `k` (a literal) was found at `at` matches around it.

    Literals must follow one another with each placeholder's value between them: at most MAX_VALUE
    characters on one line, of the conversion's kind (digits for %d). The nearest occurrence of each
    neighbouring literal is taken, so the cost is a few bounded `str.find` calls, whatever the text.
    Returns (start, end, value spans in text order) or None."""
    n = len(text)
    spans: dict[int, tuple[int, int]] = {}
    cur = at + len(parts[k][1])
    j = k + 1
    while j < len(parts):
        conv = parts[j][1]
        nl = text.find("\n", cur)
        line_end = n if nl < 0 else nl
        if j + 1 < len(parts):
            nxt = parts[j + 1][1]
            stop = min(line_end, cur + MAX_VALUE) + len(nxt)
            quoted = nxt[0] == '"' and parts[j - 1][1].endswith('"')
            if quoted:
                # a quoted value ("%s") holds no quote: stop at the first one; it may span lines
                # (`at or near "%s"` quotes the rest of a multi-line statement)
                q = text.find('"', cur, min(n, cur + MAX_VALUE + 1))
                q = q if q >= 0 and text.startswith(nxt, q) else -1
            else:
                q = text.find(nxt, cur, stop)
            while q >= 0 and not _value_ok(conv, text[cur:q].replace("\n", " ") if quoted else text[cur:q]):
                q = text.find(nxt, q + 1, stop)
            if q < 0:
                return None
            spans[j] = (cur, q)
            cur = q + len(nxt)
            j += 2
        else:
            hi = min(line_end, cur + MAX_VALUE)
            if conv[-1] in "diuxX":
                e = cur + (1 if cur < hi and text[cur] == "-" else 0)
                while e < hi and text[e] in "0123456789abcdef"[:10 if conv[-1] in "diu" else 16]:
                    e += 1
                hi = e
            if not _value_ok(conv, text[cur:hi].rstrip()):
                return None
            spans[j] = (cur, cur + len(text[cur:hi].rstrip()))
            cur = spans[j][1]
            j += 1
    end = cur
    cur = at
    j = k - 1
    while j >= 0:
        conv = parts[j][1]
        nl = text.rfind("\n", 0, cur)
        line_start = nl + 1
        if j - 1 >= 0:
            prv = parts[j - 1][1]
            lo = max(line_start - len(prv), cur - MAX_VALUE - len(prv), 0)
            if prv.endswith('"') and parts[j + 1][1].startswith('"'):
                q = text.rfind('"', lo, cur)
                q = q - len(prv) + 1 if q >= 0 and text.startswith(prv, q - len(prv) + 1) else -1
            else:
                q = text.rfind(prv, lo, cur)
            while q >= 0 and not _value_ok(conv, text[q + len(prv):cur]):
                q = text.rfind(prv, lo, q + len(prv) - 1)
            if q < 0:
                return None
            spans[j] = (q + len(prv), cur)
            cur = q
            j -= 2
        else:
            # a leading placeholder holds what precedes the literal back to the line's start or the
            # last ": " ("LOG:  server process (PID 7) was ..." -> "server process"), at most 80 characters
            lo = max(line_start, cur - LEADING_VALUE)
            cut = text.rfind(": ", lo, cur)
            s = cut + 2 if cut >= 0 else lo
            while s < cur and text[s] == " ":
                s += 1
            if not _value_ok(conv, text[s:cur]):
                return None
            spans[j] = (s, cur)
            cur = s
            j -= 1
    return cur, end, [spans[i] for i in sorted(spans)]


def _arg_order(parts: list[tuple[str, str]]) -> list[int]:
    """For each placeholder in text order, the argument it prints (translations may reorder with %2$s)."""
    order, n = [], 0
    for kind, text in parts:
        if kind == "conv":
            m = re.match(r"%(\d+)\$", text)
            order.append(int(m.group(1)) - 1 if m else n)
            n += 1
    return order


def _weak(parts: list[tuple[str, str]]) -> bool:
    literal = "".join(t for k, t in parts if k == "lit")
    if _CJK.search(literal):
        return len(_CJK.findall(literal)) < 8
    return len(_LETTERS.findall(literal)) < 24 or len(re.findall(r"[^\W\d_]{2,}", literal)) < 4


def _lead(parts: list[tuple[str, str]], k: int, off: int, anchor: str) -> int:
    """The most characters a match of this pattern can start before its anchor ends (what `verify`
    reads backwards): the literals before the anchor's part as they are, a placeholder's value at most
    MAX_VALUE (plus the literal before it, for a quoted one), a leading one's LEADING_VALUE."""
    n = off + len(anchor)
    for i in range(k):
        kind, t = parts[i]
        n += len(t) if kind == "lit" else LEADING_VALUE if i == 0 else MAX_VALUE + len(parts[i - 1][1])
    return n


def compile_catalog(messages: list[Message]) -> tuple[list[list[list]], int]:
    """For each message, its patterns: [lang, form index, anchor, anchor part, anchor offset in it, weak];
    and the greatest `_lead` of them all, which lets a search stop early (MessageMatcher.find).

    The form index names the text the pattern reads: 0 the English template, n the n-th form of
    the message's translations in `lang`. Done once when the catalog is built (build.py stores the
    result), so a server starts without folding 100,000 forms, and holds each form once (a pattern
    is folded again only when a paste hits its anchor). The anchor of a pattern is the GRAM-character
    window of a literal part that the fewest patterns share (among those long enough to be
    selective), which keeps the candidates per hit few."""
    pending = []
    for mi, m in enumerate(messages):
        if m.generic or m.kind == "other":
            continue
        english = fold_template(m.template)
        forms = [("en", 0, m.template)] + [(lang, j, f) for lang, fs in sorted(m.translations.items())
                                          for j, f in enumerate(fs)]
        seen = set()
        for lang, j, form in forms:
            folded = fold_template(form)
            if not folded or (lang != "en" and folded == english) or folded in seen:
                continue
            parts = _parts(folded)
            if not any(k == "lit" and _LETTERS.search(t) for k, t in parts):
                continue
            seen.add(folded)
            pending.append((mi, lang, j, parts))

    def grams(parts):
        for i, (k, t) in enumerate(parts):
            if k != "lit" or not _LETTERS.search(t):
                continue
            if len(t) <= GRAM:
                yield i, 0, t
            else:
                for off in range(len(t) - GRAM + 1):
                    yield i, off, t[off:off + GRAM]

    gram_freq: dict[str, int] = {}
    for _mi, _lang, _j, parts in pending:
        for g in {g for _i, _o, g in grams(parts)}:
            gram_freq[g] = gram_freq.get(g, 0) + 1
    out: list[list[list]] = [[] for _ in messages]
    lead = 0
    for mi, lang, j, parts in pending:
        # short grams (a whole short literal) are weaker than full ones: rank by (shared by, shortness)
        i, off, gram = min(grams(parts), key=lambda x: (gram_freq[x[2]] * (1 + GRAM - len(x[2])), x[0], x[1]))
        out[mi].append([lang, j, gram, i, off, _weak(parts)])
        lead = max(lead, _lead(parts, i, off, gram))
    return out, lead


def _form(m: Message, lang: str, j: int) -> str:
    """The text a pattern reads: the English template, or the j-th form of its translations in `lang`."""
    return m.template if lang == "en" else m.translations[lang][j]


class _Pattern:
    __slots__ = ("message", "lang", "folded", "k", "off", "weak", "_parts")

    def __init__(self, message: Message, lang: str, folded: str, k: int, off: int, weak: bool):
        self.message, self.lang, self.folded, self.k, self.off, self.weak = message, lang, folded, k, off, weak
        self._parts = None

    @property
    def parts(self) -> list[tuple[str, str]]:
        if self._parts is None:
            self._parts = _parts(self.folded)
        return self._parts


@dataclass
class Found:
    """One message found in a paste."""

    message: Message
    lang: str
    start: int  # offsets in the paste
    end: int
    text: str
    values: list[str] = field(default_factory=list)  # in the English template's argument order
    also: list[Message] = field(default_factory=list)  # other templates that read the same text

    def as_dict(self) -> dict:
        return {"id": self.message.id, "template": self.message.template, "kind": self.message.kind,
                "lang": self.lang, "values": self.values, "start": self.start, "end": self.end, "text": self.text}


# How much the matches found must grow between two attempts to settle a search early (MessageMatcher.find):
# doubling, the attempts before the last cost at most what it costs, and a search reads at most twice the
# matches it needed to settle (3 and 4 measured no faster on hostile pastes, and slower on real ones).
CHECK_GROWTH = 2


class MessageMatcher:
    """The automaton and patterns of one catalog; read-only once built, so safe across threads.

    A pattern is kept as a tuple (message index, lang, form index, anchor part, offset, weak); its
    _Pattern (the folded form and its parts) is made when a paste first hits its anchor, so a server
    holds 85,000 small tuples, not 85,000 objects and folded copies of every form."""

    def __init__(self, catalog: MessageCatalog, release: bool = False, keep_anchors: bool = False):
        """`release`: take the catalog's precomputed patterns and free them on the way (catalog.patterns
        is None after), so the matcher's own records reuse their memory instead of adding to it.
        `keep_anchors`: keep the automaton's words until the matcher is first pickled (see __getstate__)."""
        self.catalog = catalog
        if catalog.patterns and catalog.lead:  # precomputed when the catalog was built
            patterns, self._lead = catalog.patterns, catalog.lead
        else:
            patterns, self._lead = compile_catalog(catalog.messages)
        if release:
            catalog.patterns = None
        messages = catalog.messages
        order = sorted(range(len(messages)),
                       key=lambda i: (COMPONENT_ORDER.get(messages[i].component, 9), messages[i].id))
        self._records: list[tuple] = []
        self._made: dict[int, _Pattern] = {}
        self._made_lock = threading.Lock()
        self._same: dict[int, list[Message]] = {}
        by_text: dict[tuple[str, str], int] = {}
        anchors: dict[str, list[int]] = {}
        records = self._records
        for mi in order:
            m = messages[mi]
            for lang, j, anchor, k, off, weak in patterns[mi]:
                # the same text printed by another component (libpq's and psql's "out of memory")
                key = (_form(m, lang, j), lang)
                n = by_text.get(key)
                if n is not None:
                    self._same.setdefault(n, []).append(m)
                    continue
                n = by_text[key] = len(records)
                anchors.setdefault(anchor, []).append(n)
                records.append((mi, sys.intern(lang), j, k, off, weak))
            if release:
                patterns[mi] = None
        del by_text
        # ahocorasick-rs (Rust's aho-corasick, a contiguous NFA): about 18 MB for 80,000 anchors where a
        # pointer trie takes 45, and it reports character offsets of every overlapping match
        words = list(anchors)
        self._targets: list[tuple[int, ...]] = [tuple(anchors.pop(w)) for w in words]
        self._anchors = words if keep_anchors else None
        self._automaton = self._build_automaton(words)
        self._severity, self._severity_words = self._severity_regex(catalog)

    @staticmethod
    def _build_automaton(words: list[str]):
        return ahocorasick_rs.AhoCorasick(words, matchkind=ahocorasick_rs.MATCHKIND_STANDARD, store_patterns=False)

    def __getstate__(self) -> dict:
        """What a signed cache holds (kb.service.catalog.cached_matcher): the catalog, the records and
        the automaton's words, not the automaton (Rust's, not picklable: rebuilt in half a second) nor
        the patterns made so far. The cache drops the words once it is written."""
        if self._anchors is None:
            raise TypeError("this matcher was built without keep_anchors: it cannot be pickled")
        return {k: v for k, v in self.__dict__.items() if k not in ("_automaton", "_made", "_made_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._made, self._made_lock = {}, threading.Lock()
        self._automaton = self._build_automaton(self._anchors)
        self._anchors = None

    def warm(self, pause: float = 0.0) -> None:
        """Make every pattern (its folded form and parts) ahead of the pastes that would first hit it.

        Lazily, a hostile paste hitting thousands of patterns never hit before pays their folding (about
        50 ms for 32 KB); a server warms them in the background once it is up (Service.warm_in_background),
        a triage does not (it holds only the patterns a log hits, for its memory bound). `pause`: seconds
        to yield every 1,000 patterns, so requests arriving meanwhile are not held up."""
        for n in range(len(self._records)):
            self._pattern(n).parts
            if pause and n % 1000 == 999:
                time.sleep(pause)

    def _pattern(self, n: int) -> _Pattern:
        p = self._made.get(n)
        if p is None:
            mi, lang, j, k, off, weak = self._records[n]
            m = self.catalog.messages[mi]
            folded = fold_template(_form(m, lang, j))
            p = _Pattern(m, lang, folded, k, off, weak)
            with self._made_lock:
                p = self._made.setdefault(n, p)
        return p

    @property
    def pattern_count(self) -> int:
        return len(self._records)

    @staticmethod
    def _severity_regex(catalog: MessageCatalog):
        words = {"ERROR", "FATAL", "PANIC", "WARNING", "LOG", "NOTICE", "INFO", "DEBUG", "DETAIL", "HINT", "CONTEXT",
                 "STATEMENT", "QUERY", "error", "fatal", "warning", "detail", "hint", "pq", "PSQLException",
                 "PostgresException", "PostgresError", "DatabaseError", "OperationalError", "ProgrammingError"}
        for m in catalog.messages:
            if m.template.strip(": ") in {"ERROR", "FATAL", "PANIC", "WARNING", "LOG", "NOTICE", "INFO", "DEBUG",
                                          "error", "fatal", "warning", "detail", "hint"}:
                for forms in m.translations.values():
                    words.update(f.strip(": \u00a0") for f in forms if f.strip(": "))
        alt = "|".join(sorted((re.escape(w) for w in words if w), key=len, reverse=True))
        # the tail of a line before a message: a severity word and a colon, a 5-character SQLSTATE
        # and a colon (Npgsql, PDO), or an exception class name and a colon. Linear: anchored at $.
        drivers = (r"(?:psycopg2?|asyncpg|sqlalchemy|django\.db)[\w.]*\.\w+\)?|PG::\w+|org\.postgresql\.[\w.]+"
                   r"|Npgsql[\w.]*|io\.vertx\.pgclient[\w.]*|tokio_postgres[\w:]*|sqlx[\w:]*")
        # jsonlog's and other structured loggers' message field; csvlog's SQLSTATE field before it
        fields = r"[\"']?(?:message|msg|error|err)[\"']?\s?[:=]\s?[\"']?|(?:^|,)[0-9A-Z]{5},\"?"
        rx = re.compile(r"(?:^|[^\w])(?:%s)\s?:\s*$|(?:^|[^\w])[0-9A-Z]{5}:\s*$|(?:%s)\s?:\s*$|(?:%s)$"
                        % (alt, drivers, fields))
        return rx, {w.lower() for w in words}

    def _context_ok(self, text: str, start: int, end: int, alone: bool = True) -> bool:
        """A short template is taken only where PostgreSQL's own framing shows it is a message."""
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        before = text[max(line_start, start - 80):start]
        after = text[end:min(line_end, end + 40)]
        if self._severity.search(before):
            return True
        if re.match(r"\s*\(SQLSTATE [0-9A-Z]{5}\)", after):
            return True
        # alone on its line (a paste of just the message); not for "%s: ..." templates, whose
        # leading value would be any word before a colon ("MemoryError: out of memory")
        return alone and not text[line_start:start].strip(" \t\"'`") and not after.strip(" \t\"'`.")

    def find(self, text: str, limit: int = 50) -> list[Found]:
        """Messages in the paste, in the order they appear, each once (the first `limit`). A match lying
        inside another match's literal text is dropped (a shorter template that is part of a longer
        one); one lying inside another's placeholder value is kept (a message quoted inside a message).

        Candidates come in the order their anchors end in the paste and are verified as they come: at
        most MAX_VERIFY of them, the first ones in the paste, whatever the paste holds. No match starts
        more than `self._lead` characters before its anchor ends, so once every match that could change
        the first `limit` messages lies behind the scan, the rest of the paste is not read (a paste
        made of a thousand messages costs what its first ones cost)."""
        folded, fstarts, ostarts = fold(text)
        found: list[tuple] = []
        budget = MAX_VERIFY
        targets, made, n_folded, lead = self._targets, self._made, len(folded), self._lead
        check_at = limit  # found matches at which to try to settle the first `limit` messages
        memo: dict = {}  # what one attempt learnt and the next reuses (see _resolve)
        for a, start, end in self._automaton.find_matches_as_indexes(folded, overlapping=True):
            if budget <= 0:
                break
            if len(found) >= check_at and end > lead:  # (before that no stop is possible)
                out, reach = self._resolve(text, folded, fstarts, ostarts, found, limit, memo)
                if reach is not None and reach <= end - lead:
                    return out  # no match still to come starts before `end - lead`
                check_at = CHECK_GROWTH * len(found)
            for i in targets[a]:
                budget -= 1
                p = made.get(i) or self._pattern(i)
                parts = p.parts
                at = start - p.off
                if at < 0 or not folded.startswith(parts[p.k][1], at):
                    continue
                r = verify(folded, parts, p.k, at)
                if r is None:
                    continue
                s, e, spans = r
                if s > 0 and folded[s - 1].isalnum() and folded[s].isalnum():
                    continue
                if e < n_folded and folded[e].isalnum() and folded[e - 1].isalnum():
                    continue
                if parts[0][0] == "conv" and folded[spans[0][0]:spans[0][1]].rstrip(":") in self._severity_words:
                    continue  # "%s: out of memory" read over "ERROR:  out of memory"
                found.append((s, e, p, spans, _literal_spans(s, e, spans), i))
        return self._resolve(text, folded, fstarts, ostarts, found, limit, memo)[0]

    def _resolve(self, text: str, folded: str, fstarts: list[int], ostarts: list[int], found: list[tuple],
                 limit: int, memo: dict | None = None) -> tuple[list[Found], int | None]:
        """The first `limit` messages of the matches found, and how far (in the folded paste) the
        matches reach that decided them: a match not yet found, starting at or past that point, can
        change none of them. (None when fewer than `limit` were found.)

        A match is only ever beaten by more matches, never restored, and only by one that overlaps it,
        so the messages are settled once no match yet to come can overlap a match kept before them.
        For the same reason a later attempt over more matches (`memo`, kept by the caller between
        attempts) takes the beaten as beaten, and compares the others with the new matches alone."""
        memo = {} if memo is None else memo
        # Two matches cannot both read the same characters as literal text: the one with more literal
        # text wins (a template that is part of a longer one loses). A match inside another's
        # placeholder value is kept (a message quoted in a message) unless it is a short label.
        # weight: literal characters, less a penalty for values that look stretched over other text
        # (a quote inside an unquoted value, or a value past 100 characters): of two readings of one
        # text the tighter wins (`type "%s" does not exist` over `column %s.%s does not exist`
        # stretched from an earlier "ADD COLUMN")
        def weight_of(x) -> float:
            pen = 0.0
            for a, b in x[3]:
                value = folded[a:b]
                quoted = a > 0 and folded[a - 1] == '"'
                pen += (10 * value.count('"') if not quoted else 0) + max(0, b - a - 100) / 8
            return sum(b - a for a, b in x[4]) - pen

        weight = memo.setdefault("weight", [])
        weight.extend(weight_of(x) for x in found[len(weight):])
        beaten_before: set[int] = memo.setdefault("beaten", set())
        compared = memo.get("compared", 0)  # the matches already compared with one another
        memo["compared"] = len(found)
        # only matches whose spans meet can beat one another: look at those alone (a sweep over the
        # matches ordered by start), not at every pair, so a paste of thousands of matches stays linear
        order = sorted(range(len(found)), key=lambda n: found[n][0])
        starts = [found[n][0] for n in order]
        longest = max((x[1] - x[0] for x in found), default=0)
        kept = []
        for n, (s, e, p, spans, lits, i) in enumerate(found):
            if n in beaten_before:
                continue
            fresh = compared if n < compared else 0  # an old match: only the new ones can beat it
            beaten = False
            for n2 in order[bisect.bisect_left(starts, s - longest):bisect.bisect_left(starts, e)]:
                if n2 < fresh:
                    continue
                s2, e2, p2, spans2, lits2, _i2 = found[n2]
                if n2 == n or e2 <= s or e <= s2:
                    continue
                overlap = any(a < d and c < b for a, b in lits for c, d in lits2)
                if overlap and (s2, e2) != (s, e) and (weight[n2], -n2) > (weight[n], -n):
                    beaten = True
                    break
                holder = next(((a, b) for a, b in spans2 if a <= s and e <= b), None) if not overlap and p.weak else None
                if holder is not None:
                    # a short label inside another message's value is part of it, unless the value
                    # frames it as a message of its own: a severity word between the value's start and
                    # the label ("waiting for %s" holding "server to start....FATAL:  lock file ...")
                    lo, at = _orig(holder[0], fstarts, ostarts), _orig(s, fstarts, ostarts)
                    if lo < at and self._severity.search(text, max(lo, at - 80), at):
                        continue
                    beaten = True
                    break
            if beaten:
                beaten_before.add(n)
            else:
                kept.append((s, e, p, spans, i))
        # a short template whose placeholder holds another message is that message's framing
        # ("waiting for %s" over "waiting for server to start....FATAL:  ..."); the messages inside
        # one start within it
        kept.sort(key=lambda k: k[0])
        kept_starts = [k[0] for k in kept]

        def frames_another(k) -> bool:
            inside = kept[bisect.bisect_left(kept_starts, k[0]):bisect.bisect_left(kept_starts, k[1])]
            return any(o is not k and any(a <= o[0] and o[1] <= b for a, b in k[3]) for o in inside)

        candidates = kept  # by start, before framings are dropped (see reach below)
        kept = [k for k in kept if not (k[2].weak and frames_another(k))]
        out: list[Found] = []
        seen: set[str] = set()
        by_span: dict[tuple[int, int], Found] = {}
        for s, e, p, spans, i in sorted(kept, key=lambda x: (x[0], -(x[1] - x[0]), len(x[3]), -len(x[2].folded))):
            if p.message.id in seen:
                continue
            if (s, e) in by_span:  # the same text read as another template ("%s" vs "%s.%s")
                by_span[(s, e)].also.append(p.message)
                seen.add(p.message.id)
                continue
            os_, oe = _orig(s, fstarts, ostarts), _orig(e, fstarts, ostarts, end=True)
            if p.weak:
                if not self._context_ok(text, os_, oe, alone=p.parts[0][0] == "lit"):
                    continue
            seen.add(p.message.id)
            raw = [text[_orig(a, fstarts, ostarts):_orig(b, fstarts, ostarts, end=True)] for a, b in spans]
            values = [""] * len(raw)
            for pos, arg in enumerate(_arg_order(p.parts)):
                if pos < len(raw) and arg < len(values):
                    values[arg] = raw[pos]
            found_ = Found(p.message, p.lang, os_, oe, text[os_:oe], values, list(self._same.get(i, [])))
            by_span[(s, e)] = found_
            out.append(found_)
            if len(out) >= limit:
                # what decided these: every match kept above that starts no later than the last of
                # them (a dropped framing included, as the matches inside it decided its fate)
                return out, max(k[1] for k in candidates[:bisect.bisect_right(kept_starts, s)])
        return out, None


def _literal_spans(s: int, e: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, cur = [], s
    for a, b in spans:
        if a > cur:
            out.append((cur, a))
        cur = b
    if e > cur:
        out.append((cur, e))
    return out


_default: MessageMatcher | None = None
_default_lock = threading.Lock()


def default_made() -> bool:
    """Whether this process has made its default matcher already."""
    return _default is not None


def default_matcher(build=None) -> MessageMatcher:
    """The matcher over the committed catalog, made once per process: by `build()` when given (a
    server's start reads it from its instance folder's cache, kb.service.catalog.cached_matcher),
    else from the catalog file."""
    global _default
    with _default_lock:
        if _default is None:
            from kb.messages import catalog
            from kb.messages.memory import large_blocks_returned

            with large_blocks_returned():  # the largest transient of a start: see there
                made = build() if build else MessageMatcher(catalog.load(), release=True)
            catalog.adopt(made.catalog)  # catalog.load() answers with the matcher's own catalog
            _default = made
        return _default
