"""Loading content and runbooks: every problem reported as path:line: field: reason, exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kb.service.catalog import load_catalog
from kb.errors import ContentInvalid

GOOD_FRONT = """---
title: "FATAL: example error for tests"
engine: postgresql
sqlstate: ["53300"]
messages: ["sorry, too many clients already"]
level: FATAL
severity: high
difficulty: beginner
time_to_fix: "5 minutes"
tags: [connections]
sources:
  - title: "PostgreSQL docs"
updated: 2026-11-26
---
"""
GOOD_BODY = """Lead.

## Quick fix
Do this.

## What causes it
That.

## How to fix it
### Step one
```sql
SELECT 1;
```

## Why it happens
Because.

## Common debug mistakes
Guessing.

## When it signals a deeper problem
Often.

## FAQ
### Question?
Answer.
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / "content" / "postgresql"
    d.mkdir(parents=True, exist_ok=True)
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    p = d / f"{name}.md"
    p.write_text(text)
    return p


def problems(tmp_path: Path, strict: bool = False) -> list[str]:
    try:
        load_catalog(tmp_path / "content", tmp_path / "runbooks", strict=strict)
    except ContentInvalid as exc:
        return [str(p).replace(str(tmp_path) + "/", "") for p in exc.problems]
    return []


def test_good_entry_loads(tmp_path):
    write(tmp_path, "example", GOOD_FRONT + GOOD_BODY)
    assert problems(tmp_path) == []


P = "content/postgresql/example.md"


@pytest.mark.parametrize("front,body,expected", [
    (GOOD_FRONT.replace("severity: high", "severity: huge"), GOOD_BODY,
     [f"{P}:7: severity: Input should be 'critical', 'high', 'medium' or 'low'"]),
    (GOOD_FRONT.replace('sqlstate: ["53300"]', 'sqlstate: ["5330"]'), GOOD_BODY,
     [f"{P}:4: sqlstate: '5330' is not a 5-character SQLSTATE"]),
    (GOOD_FRONT.replace('time_to_fix: "5 minutes"\n', ""), GOOD_BODY,
     [f"{P}:2: time_to_fix: required field is missing"]),
    (GOOD_FRONT.replace("tags: [connections]", "tags: [connections]\ncolour: blue"), GOOD_BODY,
     [f"{P}:11: colour: unknown field"]),
    (GOOD_FRONT.replace('  - title: "PostgreSQL docs"', '  - url: "https://x"'), GOOD_BODY,
     [f"{P}:12: sources[0].title: required field is missing"]),
    (GOOD_FRONT.replace("updated: 2026-11-26", "updated: soon"), GOOD_BODY,
     [f"{P}:13: updated: Input should be a valid date or datetime, input is too short"]),
    (GOOD_FRONT.replace("level: FATAL", "level: [FATAL"), GOOD_BODY,
     [f"{P}:7: front matter: invalid YAML: did not find expected ',' or ']'"]),
    (GOOD_FRONT, GOOD_BODY.replace("## Why it happens\nBecause.\n\n", ""),
     [f"{P}:38: body: required section 'Why it happens' is missing"]),
    (GOOD_FRONT, GOOD_BODY.replace("## FAQ\n### Question?\nAnswer.\n", "## FAQ\nNo questions.\n"),
     [f"{P}:38: body: section 'FAQ' needs at least one H3 question"]),
    (GOOD_FRONT, GOOD_BODY.replace("## Quick fix", "## Quick fixes"),
     [f"{P}:17: body: unknown section 'Quick fixes' (allowed: Quick fix, What causes it, How to fix it, Why it happens, "
      "Common debug mistakes, When it signals a deeper problem, FAQ)",
      f"{P}:41: body: required section 'Quick fix' is missing"]),
    (GOOD_FRONT, "# Title\n" + GOOD_BODY, [f"{P}:15: body: H1 heading 'Title': the title comes from front matter"]),
    ("title: no front matter\n", GOOD_BODY,
     [f"{P}:1: front matter: file must start with a '---' YAML block closed by '---'"]),
])
def test_entry_problems(tmp_path, front, body, expected):
    write(tmp_path, "example", front + body)
    assert problems(tmp_path) == expected


def test_every_problem_of_every_file_is_reported_together(tmp_path):
    write(tmp_path, "one", GOOD_FRONT.replace("severity: high", "severity: x") + GOOD_BODY)
    write(tmp_path, "two", GOOD_FRONT.replace("difficulty: beginner", "difficulty: y") + GOOD_BODY)
    found = problems(tmp_path)
    assert [f.split(":")[0] for f in found] == ["content/postgresql/one.md", "content/postgresql/two.md"]


def test_cross_file_warnings_fail_only_strict(tmp_path):
    write(tmp_path, "one", GOOD_FRONT.replace("tags: [connections]", "tags: [connections]\nrelated: [nowhere]") + GOOD_BODY)
    write(tmp_path, "two", GOOD_FRONT + GOOD_BODY)
    assert problems(tmp_path) == []
    assert problems(tmp_path, strict=True) == [
        "content/postgresql/one.md:11: warning: related[0]: no entry with slug 'nowhere'",
        "content/postgresql/two.md:5: warning: messages[0]: message also claimed by "
        f"{tmp_path}/content/postgresql/one.md".replace(str(tmp_path) + "/", ""),
    ]


def test_templates_are_checked_against_the_message_catalog(tmp_path):
    front = GOOD_FRONT.replace('messages: ["sorry, too many clients already"]',
                               'messages: ["sorry, too many client already", "remaining connection slots are reserved for '
                               'roles with the SUPERUSER attribute"]\nversions:\n  - versions: "13-18"\n    message: '
                               '"remaining connection slots are reserved for roles with the %s attribute"')
    write(tmp_path, "one", front + GOOD_BODY)
    found = problems(tmp_path, strict=True)
    assert found == [
        "content/postgresql/one.md:5: warning: messages[0]: 'sorry, too many client already' is in no PostgreSQL 13-18 "
        "message catalog or binary; if a driver, tool or fork prints it, list it under other_messages",
        "content/postgresql/one.md:8: warning: versions[0].message: claims '13-18', but the binaries of 13, 14, 15 lack "
        "this message (it is in 16, 17, 18)",
    ]
    # what a driver prints inside a PostgreSQL entry is listed as such
    write(tmp_path, "one", GOOD_FRONT.replace('messages: ["sorry, too many clients already"]',
                                              'messages: ["Connection to %s refused."]\nother_messages: ["Connection to %s refused."]')
          + GOOD_BODY)
    assert problems(tmp_path, strict=True) == []


RB = """id: demo
title: Demo
summary: A demo runbook.
params:
  n: {type: int, label: N, default: 5, min: 1, max: 10}
start: a
steps:
  a:
    kind: diagnostic
    title: First step
    sql: SELECT 1 AS one
    branches:
      - when: {column: one, op: ">", value: {param: n}}
        goto: done
      - otherwise: true
        goto: done
  done:
    kind: conclusion
    title: Done
    verdict: Done.
    outcome: healthy
    status: ok
"""


def write_rb(tmp_path: Path, text: str) -> None:
    (tmp_path / "content").mkdir(exist_ok=True)
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    (tmp_path / "runbooks" / "demo.yaml").write_text(text)


R = "runbooks/demo.yaml"


@pytest.mark.parametrize("change,expected", [
    (("goto: done\n      - otherwise", "goto: nowhere\n      - otherwise"),
     [f"{R}:14: steps.a.branches[0].goto: no step 'nowhere'"]),
    (("SELECT 1 AS one", "SELECT %(m)s AS one"), [f"{R}:11: steps.a.sql: parameter 'm' is not defined in params"]),
    (("{param: n}", "{param: k}"), [f"{R}:13: steps.a.branches[0].when: parameter 'k' is not defined in params"]),
    (("column: one", "column: two"),
     [f"{R}:13: steps.a.branches[0].when: column 'two' is not returned by the step (returns: one)"]),
    (("SELECT 1 AS one", "SELECT 1 AS one WHERE 'a' LIKE 'a%'"),
     [f"{R}:11: steps.a.sql: a literal % must be written %% (parameters are %(name)s)"]),
    (("op: \">\"", "op: \"=>\""),
     [f"{R}:13: steps.a.branches[0].when.op: Input should be '==', '!=', '>', '>=', '<', '<=', 'in', 'not in', "
      "'is null', 'is not null' or 'contains'"]),
    (("kind: conclusion", "kind: verdict"),
     [f"{R}:17: steps.done: Input tag 'verdict' found using 'kind' does not match any of the expected tags: "
      "'diagnostic', 'question', 'action', 'conclusion'"]),
    (("  done:\n", "  orphan:\n    kind: conclusion\n    title: Orphan\n    verdict: x\n    outcome: problem\n  done:\n"),
     [f"{R}:17: steps.orphan: unreachable from the start step"]),
    (("        goto: done\n      - otherwise: true\n        goto: done",
      "        goto: a\n      - otherwise: true\n        goto: done"),
     [f"{R}:8: steps.a: loop without a question step: a -> a"]),
    (("default: 5", "default: 50"), [f"{R}:5: params.n: must be at most 10"]),
    (("verdict: Done.", "verdict: Saw {one} of {n}, {row_count} rows, {two}."),
     [f"{R}:20: steps.done.verdict: {{two}} does not resolve when reached from a (branches[0].goto): a returns one"]),
    (("goto: done\n      - otherwise", "goto: done\n        say: \"{one} {nope}\"\n      - otherwise"),
     [f"{R}:15: steps.a.branches[0].say: {{nope}} does not resolve: the step returns one"]),
    (("status: ok", "status: critical"), [f"{R}:22: steps.done.status: a healthy conclusion has status ok, not critical"]),
    (("    outcome: healthy\n", ""), [f"{R}:17: steps.done.outcome: required field is missing"]),
])
def test_runbook_problems(tmp_path, change, expected):
    write_rb(tmp_path, RB.replace(*change))
    assert problems(tmp_path) == expected


def test_placeholder_needs_readable_columns(tmp_path):
    """A verdict naming a column of a step whose columns cannot be read off its SQL is not proved."""
    text = RB.replace("SELECT 1 AS one", "SELECT * FROM (SELECT 1 AS one) s").replace("verdict: Done.", "verdict: Saw {one}.")
    write_rb(tmp_path, text)
    assert problems(tmp_path) == [f"{R}:20: steps.done.verdict: {{one}} does not resolve when reached from a "
                                  "(branches[0].goto): a has columns that cannot be read off its SQL (declare `columns:`)"]
    write_rb(tmp_path, text.replace("    branches:", "    columns: [one]\n    branches:", 1))
    assert problems(tmp_path) == []


def test_good_runbook_loads(tmp_path):
    write_rb(tmp_path, RB)
    assert problems(tmp_path) == []


def test_kb_check_exit_codes(tmp_path):
    write(tmp_path, "example", GOOD_FRONT.replace("severity: high", "severity: x") + GOOD_BODY)
    env = {"KB_CONTENT_DIR": str(tmp_path / "content"), "KB_RUNBOOKS_DIR": str(tmp_path / "runbooks"),
           "KB_INSTANCE_DIR": str(tmp_path / "inst"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "kb", "check"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 1
    assert "content/postgresql/example.md:7: severity:" in res.stderr
    write(tmp_path, "example", GOOD_FRONT + GOOD_BODY)
    res = subprocess.run([sys.executable, "-m", "kb", "check", "--strict"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_one_broken_entry_is_reported_once_with_the_lines_it_hides(tmp_path):
    """Entries and runbooks linking to a broken entry do not each report "no entry with slug ...":
    the broken entry's own error says how many such lines it hides."""
    import re
    import shutil

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "content", tmp_path / "content")
    shutil.copytree(root / "runbooks", tmp_path / "runbooks")
    broken = tmp_path / "content" / "postgresql" / "too-many-clients.md"
    lines = broken.read_text().split("\n")
    n = next(i for i, line in enumerate(lines) if line.startswith("severity:"))
    lines[n] = "severity: huge"
    broken.write_text("\n".join(lines))
    env = {"KB_CONTENT_DIR": str(tmp_path / "content"), "KB_RUNBOOKS_DIR": str(tmp_path / "runbooks"),
           "KB_INSTANCE_DIR": str(tmp_path / "inst"), "PATH": "/usr/bin:/bin"}
    hidden = {}
    for args in ([], ["--strict"]):
        res = subprocess.run([sys.executable, "-m", "kb", "check", *args], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
        assert res.returncode == 1
        first, summary = res.stderr.splitlines()
        m = re.fullmatch(rf"content/postgresql/too-many-clients\.md:{n + 1}: severity: Input should be 'critical', "
                         r"'high', 'medium' or 'low' \(and (\d+) references to 'too-many-clients' elsewhere, hidden: "
                         r"they follow from this error\)", first)
        assert m, first
        assert summary == "1 error(s), 0 warning(s)"
        hidden[bool(args)] = int(m.group(1))
    # runbooks' fix links and entries: lists are errors; entries' related: lists are warnings, hidden too
    assert 10 <= hidden[False] < hidden[True]


def test_knock_on_problems_fold_into_the_error_they_follow_from():
    from kb.knowledge.problems import Problem, fold_knock_on

    cause = Problem("content/x.md", 3, "severity", "bad")
    other = Problem("content/y.md", 5, "title", "missing")
    refs = [Problem("runbooks/r.yaml", 7, "entries[0]", "no entry with slug 'x'", ref=("entry", "x")),
            Problem("content/z.md", 9, "related[0]", "no entry with slug 'x'", "warning", ref=("entry", "x"))]
    kept = refs[1:] + [Problem("content/z.md", 10, "related[1]", "no entry with slug 'gone'", "warning",
                               ref=("entry", "gone"))]
    assert [str(p) for p in fold_knock_on([cause, *refs, other], {("entry", "x"): "content/x.md"})] == [
        "content/x.md:3: severity: bad (and 2 references to 'x' elsewhere, hidden: they follow from this error)",
        "content/y.md:5: title: missing"]
    # a reference to a file that is not broken (or has no error to fold into) stays
    assert fold_knock_on([other, *kept], {("entry", "x"): "content/gone.md"}) == [other, *kept]
    assert str(fold_knock_on([cause, refs[0]], {("entry", "x"): "content/x.md"})[0]).endswith(
        "(and 1 reference to 'x' elsewhere, hidden: it follows from this error)")
