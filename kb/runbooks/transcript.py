"""A run as a Markdown transcript for an incident channel or a postmortem."""

from __future__ import annotations


def _table(columns: list[str], rows: list[list], limit: int = 20) -> str:
    if not columns:
        return ""
    esc = lambda v: ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown._")
    return "\n".join(lines)


def transcript(run: dict, base: str = "") -> str:
    """Markdown for a run view (RunService.view); links are made absolute with `base` when given."""
    out = [f"# {run['runbook']['title']} on `{run['target']}`", "",
           f"- Run: [`{run['id']}`]({base}{run['links']['page']}) ({run['status']})", f"- Started by {run['created_by']} at {run['created_at']}"]
    if run["params"]:
        out.append("- Parameters: " + ", ".join(f"`{k}={v}`" for k, v in run["params"].items()))
    out.append("")
    for s in run["steps"]:
        out.append(f"## {s['seq']}. {s['title']} ({s['kind']})")
        if s.get("purpose"):
            out.append(f"_{s['purpose']}_")
        who = f" by {s['actor']}" if s.get("actor") else ""
        out.append(f"\n{s['at']}{who}: **{s['outcome']}**" + (f" in {s['duration_ms']} ms" if s.get("duration_ms") is not None else ""))
        if s.get("sql"):
            out += ["", "```sql", s["sql"].strip(), "```"]
        if s.get("columns"):
            out += ["", _table(s["columns"], s.get("rows") or [])]
            if s.get("truncated"):
                out.append(f"\n_Rows capped: kept {len(s['rows'])} of {s['row_count']}._")
        if s.get("error"):
            e = s["error"]
            out.append(f"\nError `{e.get('condition')}`" + (f" (SQLSTATE {e['sqlstate']})" if e.get("sqlstate") else "")
                       + f": {e.get('message')}")
            if e.get("entry"):
                out.append(f"See [{e['entry']['title']}]({base}{e['entry']['url']}).")
        if s.get("answer"):
            out.append(f"\nAnswer: `{s['answer']}`")
        if s.get("branch"):
            b = s["branch"]
            say = f"{b['say']}: " if b.get("say") else ""
            out.append(f"\n→ {say}{b['reason']} → **{b['goto_title']}**")
        if s.get("conclusion"):
            c = s["conclusion"]
            out.append(f"\n**Verdict ({c['status']}):** {c['verdict']}")
            if c.get("body"):
                out += ["", c["body"].strip()]
            for f in c.get("fix") or []:
                out.append(f"- Fix: [{f['label']}]({base}{f['url']})")
        out.append("")
    if run.get("failure") and run["status"] != "finished":
        f = run["failure"]
        out.append(f"**Run {run['status']}:** {f.get('condition')}: {f.get('message')}")
    return "\n".join(out).rstrip() + "\n"
