"""A run as a Markdown transcript for an incident channel or a postmortem, or as Slack text.

Nearly everything in a run comes from the diagnosed target (application names, query text, column
names, error messages) or from a user (parameters, answers), and is rendered as data, never as
markup. In Markdown: `&`, `<` and `>` become entities (no raw HTML, no autolinks), the characters
that start links, emphasis or code are backslash-escaped, and line breaks inside a value become
spaces so a value cannot open a heading or a fence; code is wrapped in a backtick run longer than
any inside it (CommonMark's code-span and fence rule). In Slack text only `&`, `<` and `>` are
escaped (Slack's rule); Slack has no escape for a backtick, so a value's backtick is shown there as
`ˋ` (U+02CB) and cannot open or end code.
"""

from __future__ import annotations

import re
import urllib.parse

_MD_PUNCT = re.compile(r"([\\`*\[\]|~])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # intraword _ (pg_locks) stays
_LINE_START = re.compile(r"^(\s*)([#+=-]|\d+[.)])")
_BACKTICKS = re.compile(r"`+")
_URL_SAFE = ":/?#@!$&*+,;=%~-._[]"  # not ( ) < > " ' \\ or spaces, which could end a link early


def _flat(value) -> str:
    """A value on one line (a line break inside a value could open a heading, a list or a fence)."""
    return " ".join(("" if value is None else str(value)).split())


def _entities(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _longest_backtick_run(s: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(s)), default=0)


class Markdown:
    """CommonMark (with GitHub tables): how values, code and links are written."""

    shows_sql = True

    @staticmethod
    def text(value) -> str:
        """A value as inline text: no raw HTML, autolink, link, emphasis, code span or line break."""
        return _MD_PUNCT.sub(lambda m: "\\" + m.group(0), _entities(_flat(value)))

    @classmethod
    def para(cls, value) -> str:
        """Text that starts a line: also no heading, list item or setext underline."""
        s = cls.text(value)
        m = _LINE_START.match(s)
        return s if m is None else s[:m.end() - 1] + "\\" + s[m.end() - 1:]

    cell = text  # Markdown.text escapes | too, so a value cannot add a table column

    @staticmethod
    def code(value) -> str:
        """A value as a code span whose delimiter is longer than any backtick run inside it."""
        s = _flat(value)
        ticks = "`" * (_longest_backtick_run(s) + 1)
        if not s or s[0] in "` " or s[-1] in "` ":
            s = f" {s} "  # CommonMark strips one space each side, so the value's own edges survive
        return f"{ticks}{s}{ticks}"

    @staticmethod
    def fence(value: str, info: str = "") -> list[str]:
        """Lines of a fenced code block whose fence is longer than any backtick run inside it."""
        ticks = "`" * max(3, _longest_backtick_run(value) + 1)
        return [ticks + info, value, ticks]

    @staticmethod
    def link(label: str, url: str) -> str:
        """A link; `label` is already rendered, `url` is made unable to end the link or carry markup."""
        return f"[{label}]({urllib.parse.quote(url, safe=_URL_SAFE)})"


class Slack(Markdown):
    """Slack message text (mrkdwn): only &, < and > are special; code cannot contain a backtick."""

    shows_sql = False  # a post is cut after a few thousand characters: the findings, not the SQL (on the run page)

    @staticmethod
    def text(value) -> str:
        """A value as Slack text: entities, one line, and no backtick (a value's ``` would turn the
        rest of the post into code)."""
        return _entities(_flat(value).replace("`", "ˋ"))

    para = cell = text

    @classmethod
    def code(cls, value) -> str:
        return f"`{cls.text(value) or ' '}`"

    @staticmethod
    def fence(value: str, info: str = "") -> list[str]:
        return ["```", _entities(value.replace("`", "ˋ")), "```"]

    @staticmethod
    def link(label: str, url: str) -> str:
        return f"<{_entities(urllib.parse.quote(url, safe=_URL_SAFE))}|{label}>"


def slack_text(value) -> str:
    """A value escaped for Slack message text (&, < and > as entities)."""
    return Slack.text(value)


def slack_link(url: str, label) -> str:
    """A Slack link `<url|label>` with both parts escaped."""
    return Slack.link(Slack.text(label), url)


def _table(f, columns: list[str], rows: list[list], limit: int = 20) -> str:
    if not columns:
        return ""
    lines = ["| " + " | ".join(f.cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f.cell(v) for v in r) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown._")
    return "\n".join(lines)


def transcript(run: dict, base: str = "", flavor: str = "markdown") -> str:
    """Markdown (or, with flavor="slack", Slack text) for a run view (RunService.view); links are made
    absolute with `base` when given."""
    f = Slack if flavor == "slack" else Markdown
    t, code = f.text, f.code
    out = [f"# {t(run['runbook']['title'])} on {code(run['target'])}", "",
           f"- Run: {f.link(code(run['id']), base + run['links']['page'])} ({t(run['status'])})",
           f"- Started by {t(run['created_by'])} at {t(run['created_at'])}"]
    if run["params"]:
        out.append("- Parameters: " + ", ".join(code(f"{k}={v}") for k, v in run["params"].items()))
    out.append("")
    for s in run["steps"]:
        out.append(f"## {s['seq']}. {t(s['title'])} ({t(s['kind'])})")
        if s.get("purpose"):
            out.append(f"_{t(s['purpose'])}_")
        who = f" by {t(s['actor'])}" if s.get("actor") else ""
        took = f" in {s['duration_ms']} ms" if s.get("duration_ms") is not None else ""
        out.append(f"\n{t(s['at'])}{who}: **{t(s['outcome'])}**{took}")
        if s.get("sql") and f.shows_sql:
            out += ["", *f.fence(s["sql"].strip(), "sql")]
        if s.get("columns"):
            out += ["", _table(f, s["columns"], s.get("rows") or [])]
            if s.get("truncated"):
                out.append(f"\n_Rows capped: kept {len(s['rows'])} of {s['row_count']}._")
        if s.get("error"):
            e = s["error"]
            state = f" (SQLSTATE {t(e['sqlstate'])})" if e.get("sqlstate") else ""
            out.append(f"\nError {code(e.get('condition'))}{state}: {t(e.get('message'))}")
            if e.get("entry"):
                out.append(f"See {f.link(t(e['entry']['title']), base + e['entry']['url'])}.")
        if s.get("answer"):
            out.append(f"\nAnswer: {code(s['answer'])}")
        if s.get("effect"):
            tag = f" (command tag {code(s['status_message'])})" if s.get("status_message") else ""
            out.append(f"\nDone: {t(s['effect'])}{tag}.")
        if s.get("branch"):
            b = s["branch"]
            say = f"{t(b['say'])}: " if b.get("say") else ""
            out.append(f"\n→ {say}{t(b['reason'])} → **{t(b['goto_title'])}**")
        if s.get("conclusion"):
            c = s["conclusion"]
            label = {"problem": "problem found", "healthy": "healthy"}.get(c.get("outcome"), "inconclusive")
            out.append(f"\n**Outcome: {t(label)}** ({t(c['status'])}): {t(c['verdict'])}")
            for paragraph in re.split(r"\n\s*\n", (c.get("body") or "").strip()):
                if paragraph.strip():
                    out += ["", f.para(paragraph)]
            for fx in c.get("fix") or []:
                out.append(f"- Fix: {f.link(t(fx['label']), base + fx['url'])}")
        out.append("")
    if run.get("failure") and run["status"] != "finished":
        fl = run["failure"]
        out.append(f"**Run {t(run['status'])} (outcome: inconclusive):** {t(fl.get('condition'))}: {t(fl.get('message'))}")
    return "\n".join(out).rstrip() + "\n"
