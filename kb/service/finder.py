"""What a paste is: the messages found in it (from the catalog and the entries' own templates), then
its SQLSTATEs, then, only when neither was found, entries similar in wording, marked as suggestions.

Every result says how it was found (`match`): "message" (a known template was found in the paste),
"sqlstate" (a SQLSTATE printed in the paste), "related" (a companion the matched entry names), or
"words" (prose similarity only). `kind` is "entry" (a written entry) or "message" (a catalog message
with no entry yet, served at /messages/<id>).
"""

from __future__ import annotations

import re

from kb.knowledge.search import SearchIndex
from kb.messages.catalog import Message, MessageCatalog
from kb.messages.formats import CONVERSION, template_key
from kb.messages.match import Found, MessageMatcher, _orig, default_matcher, fold, fold_template

# Signs that a paste is about PostgreSQL at all, for entry templates short and general enough that other
# programs print them too (Node's `connect ECONNREFUSED %s`). Linear: alternatives of fixed words.
_POSTGRES_SIGNS = re.compile(
    r"(?i)postgres|\bpsql\b|\bpg[_:\-]|\bpg\b|pgbouncer|libpq|sqlstate|:5432\b|:6432\b|port 5432|psycopg|asyncpg|npgsql"
    r"|\bpgx\b|jdbc:postgresql|org\.postgresql|node_modules/pg|pg-pool|sequelize|prisma|typeorm|knex|activerecord"
    r"|\bPG::|sqlalchemy|django\.db|\blib/pq\b|\bpq:|tokio[_-]postgres|sqlx|diesel|ecto|hikari")
_WRAPPER_END = re.compile(r":\s*(?:%s|%m)?\s*$")  # a message that ends by printing another one
# A SQLSTATE counts only where a program printed it as one: after SQLSTATE/state_code/code/errcode
# (psql's VERBOSITY, pgx, node-pg, jsonlog, PDO's SQLSTATE[...]), or opening a line as Npgsql and
# PDO do ("53300: sorry, ..."). A bare five-character token is a PID or a MySQL code as often. Linear:
# bounded repetitions only. (The lookahead lets a scan leave at once every position whose character
# opens none of the words.)
_SQLSTATE_CTX = re.compile(
    r"(?=[SsCcEe])(?i:sqlstate|state_code|sql_state|sqlerrcode|errcode|error_code|\bcode)[\"']?\s{0,3}[:=\[(]?\s{0,3}[\"']?"
    r"([0-9A-Z]{5})(?![0-9A-Za-z])"
    r"|(?m:^\s{0,8}(?:[\w.]{1,60}(?:Exception|Error):\s{1,3})?([0-9A-Z]{5}):\s)")


def sqlstates_in(text: str) -> list[str]:
    """SQLSTATE codes printed as such in the paste, in order, each once (at least one digit)."""
    out = []
    for m in _SQLSTATE_CTX.finditer(text):
        code = m.group(1) or m.group(2)
        if code and any(c.isdigit() for c in code) and code not in out:
            out.append(code)
    return out


# characters of a long paste the entries' index reads past the last catalog message answered (Finder._index_scope)
SCOPE_MARGIN = 4096
# messages the matcher settles for a search answering `limit` results: 2 * limit + 5, and all 50 when
# that leaves fewer than `limit` results (a DETAIL folds into its message, an entry's several messages
# make one result). Settling 50 messages of a dense 32 KB paste costs three times what 25 cost.
MESSAGES_PER_RESULT = 2
MAX_MESSAGES = 50
_NUMERIC = "1234567"
_TEXT = "\u27e8v\u27e9"  # ⟨v⟩: no message holds it


def sample(template: str) -> str:
    """A written template as the text a server would print, each placeholder a sample value, so that
    the matcher can tell which catalog template it is an instance of."""
    def value(m):
        c = m.group(1)
        return "%" if c == "%" else _NUMERIC if c in "diouxXeEfFgGaA" else _TEXT
    return CONVERSION.sub(value, template)


def instance_of(matcher: MessageMatcher, template: str) -> list[tuple[Found, dict[int, str]]]:
    """The catalog templates a written template instantiates, each with the values it writes in
    (`... for type oid` writes `oid` in for the second placeholder)."""
    text = sample(template).strip()
    out = []
    for f in matcher.find(text, limit=5):
        if f.end - f.start >= 0.9 * len(text):
            fixed = {i: v.strip().lower() for i, v in enumerate(f.values) if _TEXT not in v and v != _NUMERIC}
            out.append((f, fixed))
    return out


class Finder:
    """The catalog matcher and the entries' index, joined."""

    def __init__(self, messages: MessageCatalog, index: SearchIndex, entries: dict):
        self.messages = messages
        self.matcher = default_matcher() if messages is default_matcher().catalog else MessageMatcher(messages)
        self.index = index
        self.entries = entries
        self.by_key: dict[str, list[Message]] = messages.by_key
        # Which entries explain a catalog message: each template an entry claims, in any wording it
        # lists, either as the catalog has it or as an instance of it with some values written in
        # (`... for roles with the SUPERUSER attribute`, `value "%s" is out of range for type oid`).
        self.explained: dict[str, list[tuple[str, dict[int, str]]]] = {}
        self.entry_templates: dict[str, list[str]] = {}
        for e in entries.values():
            templates = list(dict.fromkeys(list(e.meta.messages) + [v.message for v in e.meta.versions if v.message]))
            self.entry_templates[e.slug] = templates
            for t in templates:
                exact = self.by_key.get(template_key(t), ())
                for m in exact:
                    self._explain(m.id, e.slug, {})
                if exact:
                    continue
                for f, fixed in instance_of(self.matcher, t):
                    for m in [f.message, *f.also]:
                        if m.template == f.message.template:
                            self._explain(m.id, e.slug, fixed)
        # An entry template the catalog holds as it is is found by the matcher (and its entry through
        # `explained`), so the index looks for the others alone: a hit on such a template whose
        # message the matcher did not accept is set aside below all the same.
        index.cover({t for ts in self.entry_templates.values() for t in ts if self._catalog_of(t)})
        self.entry_of = {mid: cands[0][0] for mid, cands in self.explained.items()}
        self.sqlstate_entries: dict[str, list[str]] = {}
        inbound: dict[str, int] = {}
        for e in entries.values():
            for rel in e.meta.related:
                inbound[rel] = inbound.get(rel, 0) + 1
        for e in entries.values():
            for code in e.meta.sqlstate:
                self.sqlstate_entries.setdefault(code, []).append(e.slug)
        for code, slugs in self.sqlstate_entries.items():
            # the entry a SQLSTATE is chiefly about first: its first code, then the one most entries link to
            slugs.sort(key=lambda s: (entries[s].meta.sqlstate[0] != code, -inbound.get(s, 0), s))

    def _explain(self, mid: str, slug: str, fixed: dict[int, str]) -> None:
        cands = self.explained.setdefault(mid, [])
        if all(c != (slug, fixed) for c in cands):
            cands.append((slug, fixed))
            cands.sort(key=lambda c: len(c[1]))  # the entry for the message as such first

    def _catalog_of(self, template: str) -> list[Message]:
        """The catalog messages, able to match on their own, that a written template is as it stands."""
        return [m for m in self.by_key.get(template_key(template), ()) if not m.generic and m.kind != "other"]

    def entry_for(self, f: Found) -> str | None:
        """The entry that explains a found message: of those claiming it, the one whose written-in
        values all equal the paste's, with the most of them (`... for type oid` over `... for type %s`)."""
        best, best_n = None, -1
        for m in [f.message, *f.also]:
            for slug, fixed in self.explained.get(m.id, ()):
                if m is not f.message:
                    fixed = {}  # another template reading the same text: its values are numbered differently
                values = [v.strip().lower() for v in f.values]
                if all(i < len(values) and values[i] == v for i, v in fixed.items()) and len(fixed) > best_n:
                    best, best_n = slug, len(fixed)
        return best

    def catalog_templates_of(self, slug: str) -> list[Message]:
        return [m for t in self.entry_templates.get(slug, []) for m in self.by_key.get(template_key(t), ())]

    def in_catalog(self, template: str) -> bool:
        return template_key(template) in self.by_key

    @staticmethod
    def _index_scope(text: str, positions: list[tuple[int, dict]], limit: int) -> str:
        """The part of a long paste the entries' index is searched in. Results come in paste order and
        only the first `limit` are answered: once the catalog's messages make `limit` results, what the
        index finds after the last of them (and after a margin for a template begun inside it) comes
        too late to be answered, and normalising the rest of a 32 KB paste would cost more than all of
        the rest of the search."""
        if len(text) <= SCOPE_MARGIN or len(positions) < limit:
            return text
        ends = sorted((r["found"].start, r["found"].end) for _pos, r in positions)
        cut = max(e for _s, e in ends[:limit]) + SCOPE_MARGIN
        return text if cut >= len(text) else text[:cut]

    def find(self, text: str, limit: int) -> dict:
        want = min(MAX_MESSAGES, MESSAGES_PER_RESULT * limit + 5)
        found = self.matcher.find(text, limit=want)
        positions, taken = self._positions(found)
        if len(positions) < limit and len(found) >= want < MAX_MESSAGES:
            found = self.matcher.find(text, limit=MAX_MESSAGES)  # too few results: settle more messages
            positions, taken = self._positions(found)
        return self._answer(text, limit, found, positions, taken)

    def _positions(self, found: list) -> tuple[list[tuple[int, dict]], set[str]]:
        """The found messages as results in paste order, (start, result), one per entry or message;
        and the keys of those entries and messages ("entry:<slug>", "message:<id>")."""
        taken: set[str] = set()
        positions: list[tuple[int, dict]] = []
        primary_seen = False
        for f in found:
            if f.message.kind in ("detail", "hint") and primary_seen:
                # a DETAIL or HINT of a message already listed belongs to it
                if positions:
                    positions[-1][1].setdefault("details", []).append(_found_dict(f))
                continue
            primary_seen = primary_seen or f.message.kind == "primary"
            slug = self.entry_for(f)
            key = f"entry:{slug}" if slug else f"message:{f.message.id}"
            if key in taken:
                continue
            taken.add(key)
            positions.append((f.start, {"kind": "entry" if slug else "message", "slug": slug, "found": f}))
        return positions, taken

    def _answer(self, text: str, limit: int, found: list, positions: list[tuple[int, dict]], taken: set[str]) -> dict:
        results: list[dict] = []
        # the entries' own templates: pooler and driver messages the catalog does not hold, and
        # entries whose wording (an older major's, or with a value written in) explains a found message
        # every hit (the index ranks the most specific first; these are placed in paste order below)
        ranked = self.index.search(self._index_scope(text, positions, limit), limit=len(self.entries),
                                   prose=False, uncovered=True)
        folded = fold(text) if ranked else None
        found_ids = {m.id for f in found for m in [f.message, *f.also]}
        for hit in ranked:
            matched = hit["matched"]
            if not matched or matched.startswith("SQLSTATE ") or f"entry:{hit['slug']}" in taken:
                continue
            cat = self._catalog_of(matched)
            if cat and not any(m.id in found_ids for m in cat):
                continue  # a catalog message the matcher did not accept here (too short for its context)
            if not cat and _weak_text(matched) and not _POSTGRES_SIGNS.search(text):
                continue  # a short driver or OS message (connect ECONNREFUSED %s) in a paste about no PostgreSQL
            regions = [r for r in (_region(folded, t) for t in self.entry_templates.get(hit["slug"], [])) if r]
            merged = False
            # the same text already read as a catalog message: one with no entry gets this one; one
            # with an entry keeps it, unless this text lies inside one of its values (a message
            # quoted in a message: could not connect to the primary server: <libpq's error>)
            overlapping = [r for _pos, r in positions if r.get("found") is not None
                           and any(a < r["found"].end and r["found"].start < b for a, b in regions)]
            for r in sorted(overlapping, key=lambda r: r["kind"] != "message"):
                f = r["found"]
                if r["kind"] == "message":
                    r["kind"], r["slug"], merged = "entry", hit["slug"], True
                    taken.add(f"entry:{hit['slug']}")
                    break
                if not any(v and text[a:b].strip() and text[a:b].strip().lower() in v.lower()
                           for a, b in regions for v in f.values):
                    merged = True
                    break
            if not merged:
                taken.add(f"entry:{hit['slug']}")
                at = _region(folded, matched)
                positions.append((at[0] if at else 1 << 30, {"kind": "entry", "slug": hit["slug"], "template": matched}))
        # A message with no entry that wraps another (libpq's `connection to server at "%s" ... failed: `
        # before the server's FATAL) comes after the message it wraps.
        def order(item):
            pos, r = item
            f = r.get("found")
            if f is not None and r["kind"] == "message":  # a wrapper with its own entry keeps its place
                if _WRAPPER_END.search(f.message.template):
                    line_end = text.find("\n", f.start)
                    reach = len(text) if line_end < 0 else line_end
                else:
                    reach = f.end
                inner = [p for p, o in positions if o is not r and f.start < p < reach]
                if inner:
                    return (max(inner), 1)
            return (pos, 0)

        keys = [order(item) for item in positions]  # (list.sort empties the list while it runs)
        positions = [item for _k, item in sorted(zip(keys, positions), key=lambda x: x[0])]
        for _pos, r in positions:
            results.append(r)
        codes = [c for c in sqlstates_in(text) if c in self.messages.sqlstates]
        for code in codes:
            for slug in self.sqlstate_entries.get(code, []):
                if f"entry:{slug}" not in taken:
                    taken.add(f"entry:{slug}")
                    results.append({"kind": "entry", "slug": slug, "match": "sqlstate", "sqlstate": code})
        message_found = any(r.get("match", "message") == "message" for r in results)
        if message_found:
            for r in list(results):
                if r["kind"] != "entry" or r.get("match") == "sqlstate":
                    continue
                for rel in self.entries[r["slug"]].meta.related:
                    if f"entry:{rel}" not in taken and rel in self.entries:
                        taken.add(f"entry:{rel}")
                        results.append({"kind": "entry", "slug": rel, "match": "related", "of": r["slug"]})
        elif not codes:
            for hit in self.index.search(text, limit=max(limit, 20)):
                if f"entry:{hit['slug']}" not in taken:
                    taken.add(f"entry:{hit['slug']}")
                    results.append({"kind": "entry", "slug": hit["slug"], "match": "words", "score": hit["score"]})
        for r in results:
            r.setdefault("match", "message")
        state = "message" if message_found else "sqlstate" if any(r["match"] == "sqlstate" for r in results) else "none"
        return {"results": results[:limit], "state": state, "sqlstates": codes}


def _found_dict(f: Found) -> dict:
    return {"id": f.message.id, "template": f.message.template, "kind": f.message.kind, "lang": f.lang,
            "values": f.values, "text": f.text[:500], "url": f"/messages/{f.message.id}"}


def _weak_text(template: str) -> bool:
    from kb.messages.match import _parts, _weak

    return _weak(_parts(fold_template(template)))


def _region(folded: tuple, template: str) -> tuple[int, int] | None:
    """Where an entry template's longest literal piece first appears in the paste, as paste offsets."""
    text, fstarts, ostarts = folded
    pieces = [p.strip() for p in CONVERSION.split(fold_template(template)) if p and len(p.strip()) > 1]
    if pieces:
        piece = max(pieces, key=len)
        at = text.find(piece)
        if at >= 0:
            return _orig(at, fstarts, ostarts), _orig(at + len(piece), fstarts, ostarts, end=True)
    return None
