"""Loads `content/**/*.md` into Entry objects, collecting every problem with its line."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from markdown_it import MarkdownIt
from pydantic import ValidationError

from kb.knowledge.model import SECTION_BY_TITLE, SECTIONS, SLUG_RE, Entry, EntryMeta, Section, Subsection
from kb.knowledge.problems import Problem, YamlLines, display_path, load_yaml, pydantic_problems, yaml_error_problem

_md = MarkdownIt("commonmark", {"html": False}).enable("table")
WITH_ITEMS = {"fix", "faq"}


def anchor(text: str) -> str:
    """A URL fragment for a heading."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80].rstrip("-") or "section"


def split_front_matter(text: str) -> tuple[str, str, int] | None:
    """(yaml text, body text, 1-based line where the body starts) or None without front matter."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1:]), i + 2
    return None


def _inline_text(tokens) -> str:
    parts = []
    for t in tokens:
        if t.type == "inline":
            parts.append(t.content)
        elif t.type in ("fence", "code_block"):
            parts.append(t.content)
    return "\n".join(parts).strip()


def _render(tokens) -> str:
    for t in tokens:
        # markdown-it aligns table columns with style attributes, which the pages' CSP refuses
        if t.type in ("th_open", "td_open") and str(t.attrs.get("style", "")).startswith("text-align:"):
            t.attrSet("class", "align-" + str(t.attrs.pop("style")).removeprefix("text-align:"))
    return _md.renderer.render(tokens, _md.options, {})


def _code(tokens) -> list[dict]:
    return [{"lang": (t.info or "").strip().split(" ")[0], "code": t.content}
            for t in tokens if t.type in ("fence", "code_block")]


def parse_body(path: str, body: str, first_line: int) -> tuple[tuple[str, str], dict[str, Section], list[Problem]]:
    """Split the Markdown body into the fixed sections; returns ((summary, its HTML), sections, problems)."""
    problems: list[Problem] = []
    tokens = _md.parse(body)
    heads = []  # (token index, level, title, line)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            line = first_line + (tok.map[0] if tok.map else 0)
            heads.append((i, tok.tag, tokens[i + 1].content.strip(), line))
    h2 = [h for h in heads if h[1] == "h2"]
    for i, tag, title, line in heads:
        if tag == "h1":
            problems.append(Problem(path, line, "body", f"H1 heading {title!r}: the title comes from front matter"))
    intro_end = h2[0][0] if h2 else len(tokens)
    summary = _inline_text(tokens[:intro_end])
    summary_html = _render(tokens[:intro_end])
    sections: dict[str, Section] = {}
    for n, (start, _, title, line) in enumerate(h2):
        end = h2[n + 1][0] if n + 1 < len(h2) else len(tokens)
        known = SECTION_BY_TITLE.get(title.lower())
        if known is None:
            allowed = ", ".join(t for _, t, _ in SECTIONS)
            problems.append(Problem(path, line, "body", f"unknown section {title!r} (allowed: {allowed})"))
            continue
        key, canonical = known
        if key in sections:
            problems.append(Problem(path, line, "body", f"section {canonical!r} appears twice"))
            continue
        inner = tokens[start + 3:end]
        items: list[Subsection] = []
        h3 = [j for j, t in enumerate(inner) if t.type == "heading_open" and t.tag == "h3"]
        lead = inner[: h3[0]] if h3 else inner
        if key in WITH_ITEMS:
            for m, j in enumerate(h3):
                stop = h3[m + 1] if m + 1 < len(h3) else len(inner)
                sub_title = inner[j + 1].content.strip()
                sub = inner[j + 3:stop]
                items.append(Subsection(anchor(f"{key}-{sub_title}"), sub_title, _render(sub), _inline_text(sub), _code(sub)))
            if not items:
                what = "fix step" if key == "fix" else "question"
                problems.append(Problem(path, line, "body", f"section {canonical!r} needs at least one H3 {what}"))
            html = _render(lead)
        else:
            html = _render(inner)
        text = _inline_text(inner)
        if not text:
            problems.append(Problem(path, line, "body", f"section {canonical!r} is empty"))
        sections[key] = Section(key, canonical, html, text, items)
    for key, title, required in SECTIONS:
        if required and key not in sections:
            last = first_line + body.count("\n")
            problems.append(Problem(path, first_line if not h2 else last, "body", f"required section {title!r} is missing"))
    return (summary, summary_html), sections, problems


def load_entry(path: Path) -> tuple[Entry | None, list[Problem]]:
    """One file: the entry (or None) and every problem found in it."""
    shown = display_path(str(path))
    slug = path.stem
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(shown, 1, "file", f"cannot read: {exc}")]
    if not SLUG_RE.match(slug):
        problems.append(Problem(shown, 1, "slug", f"file name {slug!r} must be lowercase-hyphenated"))
    split = split_front_matter(text)
    if split is None:
        return None, problems + [Problem(shown, 1, "front matter", "file must start with a '---' YAML block closed by '---'")]
    fm_text, body, body_line = split
    try:
        raw = load_yaml(fm_text) or {}
    except yaml.YAMLError as exc:
        return None, problems + [yaml_error_problem(shown, exc, "front matter", line_offset=1)]
    if not isinstance(raw, dict):
        return None, problems + [Problem(shown, 2, "front matter", "must be a mapping of keys to values")]
    meta = None
    lines = YamlLines.compose(fm_text, line_offset=1)
    try:
        meta = EntryMeta.model_validate(raw)
    except ValidationError as exc:
        problems += pydantic_problems(shown, exc, lines)
    (summary, summary_html), sections, body_problems = parse_body(shown, body, body_line)
    problems += body_problems
    if meta is None or any(p.level == "error" for p in problems):
        return None, problems
    return Entry(slug, shown, meta, summary, sections, summary_html, lines), problems


def cross_check(entries: list[Entry], runbook_ids: set[str] | None) -> list[Problem]:
    """Problems that span files: dangling links, one message claimed twice, unknown runbooks."""
    problems: list[Problem] = []
    by_slug = {e.slug: e for e in entries}
    claimed: dict[str, Entry] = {}
    for e in entries:
        lines = e.lines
        for i, rel in enumerate(e.meta.related):
            if rel not in by_slug:
                problems.append(Problem(e.path, lines.line(("related", i)), f"related[{i}]",
                                        f"no entry with slug {rel!r}", "warning", ref=("entry", rel)))
            elif e.slug not in by_slug[rel].meta.related:
                problems.append(Problem(e.path, lines.line(("related", i)), f"related[{i}]",
                                        f"{rel!r} does not link back to {e.slug!r}", "warning"))
        for i, msg in enumerate(e.meta.messages):
            key = " ".join(msg.lower().split())
            other = claimed.get(key)
            if other is not None:
                problems.append(Problem(e.path, lines.line(("messages", i)), f"messages[{i}]",
                                        f"message also claimed by {other.path}", "warning"))
            else:
                claimed[key] = e
        if runbook_ids is not None:
            for i, rb in enumerate(e.meta.runbooks):
                if rb not in runbook_ids:
                    problems.append(Problem(e.path, lines.line(("runbooks", i)), f"runbooks[{i}]",
                                            f"no runbook with id {rb!r}", ref=("runbook", rb)))
    return problems


def load_entries(root: Path) -> tuple[list[Entry], list[Problem]]:
    """Every `*.md` below `root` (README.md excepted), sorted by slug, with all problems."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        entry, found = load_entry(path)
        problems += found
        if entry is None:
            continue
        if entry.slug in seen:
            problems.append(Problem(entry.path, 1, "slug", f"slug {entry.slug!r} also used by {seen[entry.slug]}"))
            continue
        seen[entry.slug] = entry.path
        entries.append(entry)
    entries.sort(key=lambda e: e.slug)
    return entries, problems
