"""Chat messages as Slack renders them: Block Kit blocks of mrkdwn text, and the same message as plain
mrkdwn `text` (Slack's notification text, and all that Mattermost shows).

Every value that comes from a target database or a user (application names, query text, parameters,
answers, pasted text, message values) is escaped with Slack's rule (&, <, > as entities; no line
breaks; a backtick shown as ˋ) and cut to a length that fits Block Kit's limits, with a note on the
message when anything was cut; mrkdwn objects are `verbatim`, so Slack links no bare URL, channel
name or mention by itself. Only kb's own links (`<url|label>`) and formatting are markup. Block Kit's
documented limits are enforced by slack_sdk's models as each block is serialised (section text 3,000
characters, button text 75, button value 2,000, confirmation dialog texts 100/300/30) and here (50
blocks a message).
"""

from __future__ import annotations

import json
import re

from slack_sdk.models.blocks import (ActionsBlock, ButtonElement, ConfirmObject, ContextBlock, DividerBlock,
                                     MarkdownTextObject, PlainTextObject, SectionBlock)

from kb.runbooks.transcript import slack_link, slack_text

MAX_BLOCKS = 50
SECTION_TEXT = 3000
BUTTON_TEXT = 75
TEXT_LIMIT = 3000  # the message's own `text`: Slack cuts longer ones, Mattermost posts up to 16,383
TRAIL = 6  # findings of earlier steps shown on a run's message (the run page has all)
PREVIEW_ROWS = 5
CUT_NOTE = "Long values are cut here; the run page shows them in full."

OUTCOME = {"problem": "Problem found", "healthy": "Healthy", "inconclusive": "Inconclusive"}
STATUS = {"active": "in progress", "finished": "finished", "failed": "failed", "stopped": "stopped",
          "abandoned": "abandoned"}
HOW = {"message": "found in the text", "sqlstate": "SQLSTATE in the text", "related": "companion error"}
BOLD = re.compile(r"\*\*(.+?)\*\*")


def action_value(**fields) -> str:
    """A button's value: compact JSON the interaction endpoint reads back (at most 2,000 characters)."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


class Message:
    """One message being built: every value escaped and cut, blocks counted, cuts noted."""

    def __init__(self, base: str):
        self.base = base
        self.blocks: list = []
        self.was_cut = False

    # --- text ------------------------------------------------------------------------------------
    def v(self, value, limit: int = 300) -> str:
        """A value from a target or a user as mrkdwn: one line, at most `limit` characters, escaped."""
        s = " ".join(("" if value is None else str(value)).split())
        if len(s) > limit:
            s = s[: max(limit - 1, 1)].rstrip() + "…"
            self.was_cut = True
        return slack_text(s)

    def link(self, path: str, label, limit: int = 150) -> str:
        """A link to a kb page; `label` is escaped and cut like any value."""
        return slack_link(self.base + path, self.plain(label, limit))

    def plain(self, value, limit: int) -> str:
        """A value cut to `limit` characters, not escaped (for plain_text, or a label slack_link escapes)."""
        s = " ".join(("" if value is None else str(value)).split())
        if len(s) > limit:
            s = s[: max(limit - 1, 1)].rstrip() + "…"
            self.was_cut = True
        return s

    def author(self, text: str, limit: int = 240) -> str:
        """A line of an entry's Markdown (trusted, but escaped all the same) as mrkdwn: **bold** as *bold*,
        code spans kept whole."""
        s = " ".join((text or "").split())
        if len(s) > limit:
            s = s[: limit - 1].rsplit(" ", 1)[0] + "…"
            if s.count("`") % 2:
                s = s.replace("`", "")
            if s.count("**") % 2:
                s = s.replace("**", "")
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return BOLD.sub(lambda m: f"*{m.group(1)}*", s)

    # --- blocks ----------------------------------------------------------------------------------
    def _mrkdwn(self, text: str, limit: int) -> MarkdownTextObject:
        if len(text) > limit:
            text = _cut_escaped(text, limit - 2) + "\n…"
            self.was_cut = True
        return MarkdownTextObject(text=text, verbatim=True)

    def section(self, text: str) -> None:
        self.blocks.append(SectionBlock(text=self._mrkdwn(text, SECTION_TEXT)))

    def context(self, text: str) -> None:
        self.blocks.append(ContextBlock(elements=[self._mrkdwn(text, SECTION_TEXT)]))

    def divider(self) -> None:
        self.blocks.append(DividerBlock())

    def button(self, text: str, action_id: str, value: str | None = None, url: str | None = None,
               style: str | None = None, confirm: ConfirmObject | None = None) -> ButtonElement:
        label = " ".join(text.split())
        if len(label) > BUTTON_TEXT:  # not noted as a cut: every label a button shortens is also shown whole
            label = label[: BUTTON_TEXT - 1].rstrip() + "…"
        return ButtonElement(text=PlainTextObject(text=label, emoji=False), action_id=action_id, value=value, url=url,
                             style=style, confirm=confirm)

    def actions(self, *buttons: ButtonElement) -> None:
        if buttons:
            self.blocks.append(ActionsBlock(elements=list(buttons)[:25]))

    def finish(self, text: str, **fields) -> dict:
        """The message as Slack's JSON: `text`, `blocks` (each checked against Block Kit's limits as it
        is serialised) and `fields` such as response_type or replace_original."""
        if self.was_cut:
            self.context(CUT_NOTE)
        blocks = self.blocks
        if len(blocks) > MAX_BLOCKS:  # never expected: messages are built from a bounded number of parts
            blocks = blocks[: MAX_BLOCKS - 1] + [ContextBlock(elements=[MarkdownTextObject(text=CUT_NOTE)])]
        if len(text) > TEXT_LIMIT:
            text = _cut_escaped(text, TEXT_LIMIT - 2) + "\n…"
        return {**fields, "text": text, "blocks": [b.to_dict() for b in blocks]}


def _cut_escaped(text: str, limit: int) -> str:
    """At most `limit` characters of escaped mrkdwn, never ending inside an entity, a link or a code span."""
    text = text[:limit]
    amp = text.rfind("&")
    if amp != -1 and ";" not in text[amp:]:
        text = text[:amp]
    lt = text.rfind("<")
    if lt != -1 and ">" not in text[lt:]:
        text = text[:lt]
    if text.count("```") % 2:
        text = text[: text.rfind("```")]
    return text


# --- messages ------------------------------------------------------------------------------------

def notice(text: str, **fields) -> dict:
    """A short reply in kb's own words (its values already escaped), private to the asker by default."""
    fields.setdefault("response_type", "ephemeral")
    m = Message("")
    m.section(text)
    return m.finish(text, **fields)


def search_message(result: dict, base: str, catalog) -> dict:
    """The reply to `/kb <error text>`: each matched message and entry with its quick fix, a button to open
    it and one to run its runbook; a paste with no known message is answered to the asker alone."""
    m = Message(base)
    if result["match"] == "none":
        # only word-similar suggestions: told to the asker alone, never posted to the channel
        lines = [f"• {m.link(r['url'], r['title'])}" for r in result["results"]]
        text = f"{result['notice']}." + ("\nEntries with similar wording (not a match):\n" + "\n".join(lines)
                                         if lines else "")
        m.section(text)
        return m.finish(text, response_type="ephemeral")
    fallback = []
    for i, r in enumerate(result["results"]):
        if i:
            m.divider()
        head = f"*{m.link(r['url'], r['title'])}*"
        line = f"• {m.link(r['url'], r['title'])}"
        how = HOW.get(r["match"], r["match"])
        if r["sqlstates"]:
            states = m.v(", ".join(r["sqlstates"]), 60)
            head += f" · SQLSTATE {states}"
            line += f" (SQLSTATE {states})"
        if r.get("lang") and r["lang"] != "en":
            from kb.messages.catalog import LANGUAGE_NAMES

            how += f", translated from {m.v(LANGUAGE_NAMES.get(r['lang'], r['lang']), 40)}"
        line += f" [{how}]"
        found = f"_{how}_"
        msg = r.get("message")
        if msg:
            found += f": `{m.v(msg['template'], 200)}`"
            if msg.get("values"):
                found += " with " + ", ".join(f"`{m.v(v, 80)}`" for v in msg["values"][:4])
        if r["kind"] == "message":
            m.section(f"{head}\n{found}\nNo entry is written for this message yet.")
            m.actions(m.button("Open the message", "kb_open", url=base + r["url"]))
            line += "\n   No entry is written for this message yet."
            fallback.append(line)
            continue
        entry = catalog.entries.get(r["slug"])
        if r["match"] == "related":
            m.section(f"{head}\n{found} of {m.link('/errors/' + r['of'], r['of'], 80)}")
            fallback.append(line)
            continue
        quick = _quick_fix(m, entry)
        m.section(f"{head}\n{found}" + (f"\n*Quick fix*\n{quick}" if quick else ""))
        buttons = [m.button("Open the entry", "kb_open", url=base + r["url"])]
        for i, rid in enumerate((entry.meta.runbooks if entry else [])[:2]):
            rb = catalog.runbooks.get(rid)
            if rb is not None:  # action ids are unique within a block: the index tells the buttons apart
                buttons.append(m.button(f"Run: {rb.title}", f"kb_start:{i}", value=action_value(rb=rid),
                                        style="primary"))
        m.actions(*buttons)
        fallback.append(line + f"\n   {m.v(r['snippet'], 300)}")
    return m.finish("Found:\n" + "\n".join(fallback), response_type="in_channel")


def _quick_fix(m: Message, entry) -> str:
    """The entry's quick fix in at most three lines."""
    if entry is None or "quick-fix" not in entry.sections:
        return ""
    lines = [ln.strip() for ln in entry.sections["quick-fix"].text.splitlines() if ln.strip()]
    return "\n".join(f"• {m.author(ln)}" for ln in lines[:3])


def choose_target(rb, targets: list[dict]) -> dict:
    """Asked privately when the asker may run `rb` on several targets: one button per target."""
    m = Message("")
    text = f"Run *{slack_text(rb.title)}* on which target?"
    m.section(text)
    m.actions(*[m.button(t["name"], f"kb_start_on:{i}", value=action_value(rb=rb.id, t=t["name"]))
                for i, t in enumerate(targets[:25])])
    return m.finish(text, response_type="ephemeral", replace_original=False)


def finding(step: dict) -> str:
    """The one line a step found: its branch's words, else its summary."""
    b = step.get("branch") or {}
    return b.get("say") or step.get("summary") or step.get("outcome") or ""


def run_message(run: dict, base: str, working: str | None = None, **fields) -> dict:
    """A run as one message: its runbook and target, what the steps found, and the current step: an
    answer button per answer, an action's preview with a Confirm button (with Slack's confirmation
    dialog), or the verdict with its outcome and fix links. `working` (kb's words, escaped) replaces
    the buttons while a press is being carried out."""
    m = Message(base)
    page = run["links"]["page"]
    cur = run.get("current")
    status = run["status"]
    m.section(f"*{m.link(page, run['runbook']['title'])}* on `{m.v(run['target'], 80)}` · {STATUS.get(status, status)}")
    meta = f"Run {m.link(page, run['id'])} started by {m.v(run['created_by'], 80)}"
    if run["params"]:
        meta += " · " + ", ".join(f"`{m.v(k, 40)}={m.v(v, 80)}`" for k, v in list(run["params"].items())[:8])
    m.context(meta)

    steps = [s for s in run["steps"] if s["kind"] != "conclusion"]
    if steps:
        shown = steps[-TRAIL:]
        lines = [f"_{len(steps) - len(shown)} earlier steps are on the run page._"] if len(steps) > len(shown) else []
        lines += [f"• *{m.v(s['title'], 120)}*: {m.v(finding(s), 300)}" for s in shown]
        m.section("\n".join(lines))

    text = [f"*{slack_text(run['runbook']['title'])}* on `{m.v(run['target'], 80)}`"]
    if working:
        m.section(f":hourglass_flowing_sand: {working}")
        text[0] += f": {working}"
    elif status == "active" and cur and cur["waiting_for"] == "answer":
        _question(m, run, cur, text, steps)
    elif status == "active" and cur and cur["waiting_for"] == "confirm":
        _action(m, run, cur, text, steps)
    elif status == "active" and cur:
        m.section(f":hourglass_flowing_sand: Running *{m.v(cur['title'], 150)}*…")
        text[0] += f": running {m.v(cur['title'], 150)}…"
    elif status == "finished" and run.get("conclusion"):
        _conclusion(m, run, text)
    else:
        m.section(f"*Run {STATUS.get(status, status)}* (outcome: inconclusive): {m.v(run['summary'], 600)}")
        text[0] += f": {m.v(run['summary'], 600)}"
    buttons = [m.button("Open the run page", "kb_open", url=base + page)]
    if status == "finished" and (run.get("conclusion") or {}).get("fix"):
        buttons.append(m.button("Open the fix", "kb_open_fix", url=base + run["conclusion"]["fix"][0]["url"]))
    m.actions(*buttons)
    text.append(m.link(page, f"Open run {run['id']}"))
    return m.finish("\n".join(text), **fields)


def _question(m: Message, run: dict, cur: dict, text: list, steps: list) -> None:
    n = len(run["steps"])
    labels = [a["label"] for a in cur["answers"]]
    body = f"*Question: {m.v(cur['title'], 150)}*\n{m.v(cur['question'], 1500)}"
    if any(len(label) > BUTTON_TEXT for label in labels):  # a button shows 75 characters: list them whole
        body += "\n" + "\n".join(f"• {m.v(label, 300)}" for label in labels)
    m.section(body)
    m.actions(*[m.button(a["label"], f"kb_answer:{i}", value=action_value(r=run["id"], s=cur["id"], n=n, a=a["value"]))
                for i, a in enumerate(cur["answers"][:25])])
    text[0] += f": {m.v(cur['title'], 150)}"
    if steps:
        text.append(m.v(finding(steps[-1]), 400))
    text.append(m.v(cur["question"], 600))
    text += [f"• {m.v(label, 200)}" for label in labels]
    text.append("Answer with the message's buttons in Slack, or on the run page.")


def _action(m: Message, run: dict, cur: dict, text: list, steps: list) -> None:
    n = len(run["steps"])
    preview = cur.get("preview") or {}
    rows, cols = preview.get("rows") or [], preview.get("columns") or []
    count = preview.get("row_count", len(rows))
    body = f"*Action: {m.v(cur['title'], 150)}*"
    if cur.get("purpose"):
        body += f"\n{m.v(cur['purpose'], 600)}"
    m.section(body)
    affects = f"Would affect *{count}* row{'s' if count != 1 else ''}"
    if rows:
        table = [" | ".join(m.v(c, 30) for c in cols[:8])]
        table += [" | ".join(m.v(v, 40) for v in row[:8]) for row in rows[:PREVIEW_ROWS]]
        more = f"\n_and {count - PREVIEW_ROWS} more on the run page_" if count > PREVIEW_ROWS else ""
        m.section(f"{affects}:\n```\n" + "\n".join(line[:400] for line in table) + f"\n```{more}")
    else:
        m.section(affects + ".")
    dialog = ConfirmObject(
        title=PlainTextObject(text="Run this action?"),
        text=PlainTextObject(text=m.plain(f"{cur['title']}: it affects {count} row{'s' if count != 1 else ''} on "
                                          f"{run['target']} and runs once. Only a chat user with the admin role "
                                          "may confirm.", 300)),
        confirm=PlainTextObject(text="Run it"), deny=PlainTextObject(text="Cancel"), style="danger")
    m.actions(m.button("Confirm", "kb_confirm", value=action_value(r=run["id"], s=cur["id"], n=n), style="danger",
                       confirm=dialog),
              m.button("Skip it", "kb_decline", value=action_value(r=run["id"], s=cur["id"], n=n)))
    m.context("Confirming needs a chat user mapped to the admin role; kb runs the action once and then looks again.")
    text[0] += f": action {m.v(cur['title'], 150)}"
    before = [s for s in steps if s["kind"] != "preview"]
    if before:
        text.append(m.v(finding(before[-1]), 400))
    text.append(f"{affects.replace('*', '')}. Confirm it in Slack (admins) or on the run page.")


def _conclusion(m: Message, run: dict, text: list) -> None:
    c = run["conclusion"]
    label = OUTCOME.get(run.get("outcome") or c.get("outcome"), "Inconclusive")
    body = f"*{label}*: *{m.v(c['title'], 150)}*\n{m.v(c['verdict'], 1500)}"
    fixes = [f"• {m.link(fx['url'], fx['label'], 150)}" for fx in (c.get("fix") or [])[:6]]
    if fixes:
        body += "\n*Fix*\n" + "\n".join(fixes)
    m.section(body)
    text[0] += f": {label}: {m.v(c['title'], 150)}"
    text.append(m.v(c["verdict"], 800))
    text += fixes
