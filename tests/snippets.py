"""The code blocks of the content, as the tests execute them (tests/test_snippets.py).

Every fenced block of `content/**/*.md` is one `Block`. Its info string is `LANG [FILE] [key=value ...]`;
the site shows only LANG, the rest tells the tests how to run the block:

- `sql`: run on every server major the tests start (KB_PG_MAJORS, 15 and 18 by default), as a
  superuser in database `postgres` over the sample schema of tests/fixtures/snippets/*.sql, inside a
  transaction that is rolled back. Outside the block's own BEGIN ... COMMIT each statement runs in a
  savepoint, so the block behaves as it does when pasted into psql (an error does not abort the
  statements after it). A statement that writes rows (INSERT, UPDATE, DELETE, MERGE) is planned with
  EXPLAIN instead of run; one with `$1`-style parameters is prepared (what a driver's Parse message
  does) instead of run. A block with a statement that cannot run in a transaction block (VACUUM,
  ALTER SYSTEM, CREATE INDEX CONCURRENTLY, CREATE DATABASE, ...) runs for real, statement by
  statement in autocommit, on a fresh throwaway copy of the fixture cluster. psql meta-commands
  (`\\x`, `\\d orders`, a trailing `\\gexec` or `\\bind ... \\g`) are split out and not run.
  Attributes:
    - `expect=SQLSTATE[,SQLSTATE...]`: the block shows the error itself; the statements that fail
      must fail with exactly these SQLSTATEs, in this order (and a DML statement is then run, inside
      the rolled-back transaction, instead of planned);
    - `db=NAME`: the database it runs in;
    - `major=16+` (also `13-15`, `<= 15`, `17`): the server majors it is for; on the others the
      test asserts that it fails;
    - `vars="pid=pg_backend_pid(); gid='kb-demo'"`: values for the placeholders a reader must edit.
      A placeholder is written `<name>` in the block (`SELECT pg_cancel_backend(<pid>);`); the test
      replaces each one with its value before running the block;
    - `target=pgbouncer`: PgBouncer admin console commands (SHOW POOLS, RELOAD, ...), run on the
      admin console of a real PgBouncer.
- `ini pgbouncer.ini`: loaded by a real PgBouncer, wrapped into a complete configuration when it is
  a fragment (its listen address, files and paths are pointed into a temporary folder). Settings
  newer than the installed PgBouncer carry `pgbouncer=1.21+`: the test then asserts that the
  installed PgBouncer refuses them, or loads the block when it is new enough.
- `ini postgresql.conf`: included into a copy of the fixture cluster's configuration and read by
  each major's `postgres -C`, which refuses unknown settings and invalid values. `major=` applies.
- `norun="reason"`: a block in one of those languages that cannot be executed here, with why; the
  list is kept short (see NORUN_REASONS in tests/test_snippets.py).

An `ini` block names its file (`ini pgbouncer.ini`, `ini postgresql.conf`, or another file name such
as `ini override.conf`, which is not executed). Blocks in any other language (shell, application
code, log output, pg_hba.conf lines) are not executed; their language says why.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "content"

ATTRS = {"expect", "db", "major", "vars", "norun", "target", "pgbouncer"}
EXECUTED_FILES = {"pgbouncer.ini", "postgresql.conf"}

_md = MarkdownIt("commonmark", {"html": False}).enable("table")


@dataclass
class Block:
    """One fenced code block of an entry."""

    path: str  # relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    file: str | None  # `pgbouncer.ini`, `postgresql.conf`, ... (second word of an ini info string)
    attrs: dict[str, str] = field(default_factory=dict)
    code: str = ""
    section: str = ""  # the H2 and H3 it sits under

    @property
    def id(self) -> str:
        """`postgresql/too-many-clients.md:150`: the file below content/ and the line of the fence."""
        return f"{Path(self.path).relative_to('content')}:{self.line}"


def parse_info(info: str) -> tuple[str, str | None, dict[str, str]]:
    """`ini pgbouncer.ini norun="..."` -> ("ini", "pgbouncer.ini", {"norun": "..."})."""
    words = shlex.split(info)
    lang = words[0] if words else ""
    file = None
    attrs: dict[str, str] = {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq:
            attrs[key] = value
        elif file is None:
            file = word
        else:
            attrs[word] = ""
    return lang, file, attrs


def blocks(root: Path = CONTENT) -> list[Block]:
    """Every fenced or indented code block below `root`, in file order."""
    found = []
    for path in sorted(root.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        body_start = 0
        if lines and lines[0].strip() == "---":
            body_start = next(i for i in range(1, len(lines)) if lines[i].strip() == "---") + 1
        tokens = _md.parse("\n".join(lines[body_start:]))
        h2 = h3 = ""
        for i, tok in enumerate(tokens):
            if tok.type == "heading_open":
                title = tokens[i + 1].content.strip()
                if tok.tag == "h2":
                    h2, h3 = title, ""
                elif tok.tag == "h3":
                    h3 = title
            if tok.type in ("fence", "code_block"):
                lang, file, attrs = parse_info(tok.info or "")
                found.append(Block(str(path.relative_to(ROOT)), body_start + tok.map[0] + 1, lang, file, attrs,
                                   tok.content, f"{h2} / {h3}" if h3 else h2))
    return found


# ---- server majors ------------------------------------------------------------------------------

_RANGE = re.compile(r"(<=|<|>=)\s*(\d+)|(\d+)\s*(?:-|to)\s*(\d+)|(\d+)\s*\+|(\d+)")


def majors_in(spec: str, known=range(9, 30)) -> set[int]:
    """The majors a spec names: `16+`, `13-15`, `<= 15`, `< 16`, `17`, `all`, or several of them
    separated by commas or slashes (`13-14 / 15`). Numbers below 9 (`1.21+`) are not majors."""
    spec = spec.strip()
    if spec.startswith("all"):
        return set(known)
    out: set[int] = set()
    for m in _RANGE.finditer(spec):
        op, n, lo, hi, plus, one = m.groups()
        if op:
            n = int(n)
            out |= {k for k in known if (k <= n if op == "<=" else k < n if op == "<" else k >= n)}
        elif lo:
            out |= {k for k in known if int(lo) <= k <= int(hi)}
        elif plus:
            out |= {k for k in known if k >= int(plus)}
        else:
            out |= {int(one)} & set(known)
    return out


def for_major(block: Block, major: int) -> bool:
    """Whether the block is meant for this server major (its `major=` attribute; every major without one)."""
    spec = block.attrs.get("major")
    return spec is None or major in majors_in(spec)


# ---- SQL statements -----------------------------------------------------------------------------

@dataclass
class Statement:
    """One statement of a sql block, as sent to the server."""

    text: str
    line: int  # line in the markdown file
    node: object | None = None  # the pglast node (None when PostgreSQL's parser refuses it)

    @property
    def kind(self) -> str:
        return type(self.node).__name__ if self.node is not None else ""


PLACEHOLDER = re.compile(r"(?<![?\\k])<([a-z][a-z0-9_]*)>")  # not a regex's named group, (?<id>...) or \k<id>
# a psql meta-command: a backslash and a letter at the start of a line or after white space
_META = re.compile(r"(?:^|(?<=\s))\\[a-zA-Z?!]")


def variables(block: Block) -> dict[str, str]:
    """The block's `vars="name=value; name2=value2"` attribute as a dict."""
    out = {}
    for part in block.attrs.get("vars", "").split(";"):
        if part.strip():
            name, eq, value = part.strip().partition("=")
            if not eq:
                raise ValueError(f"{block.id}: vars entry {part!r} is not name=value")
            out[name.strip()] = value.strip()
    return out


def sql_text(block: Block, env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """The block's SQL with its placeholders filled in and psql meta-commands blanked out (lines keep
    their numbers), and the meta-commands that were taken out. A value may name what the test
    provides (`env`): `{port}`, the fixture cluster's port (for a block that connects to it as a
    second server), and `{victim}`, the pid of another session the test opens for the block to
    cancel or terminate."""
    values = variables(block)
    for key, value in (env or {}).items():
        values = {name: v.replace("{" + key + "}", value) for name, v in values.items()}
    code = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), block.code)
    lines, metas = [], []
    for line in code.split("\n"):
        m = _META.search(line)
        # only outside a quoted string: an even number of quotes before the backslash
        if m and line[:m.start()].count("'") % 2 == 0 and "--" not in line[:m.start()]:
            metas.append(line[m.start():].strip())
            before = line[:m.start()]
            terminator = re.match(r"\\g", line[m.start():]) is not None  # \g, \gx, \gexec, \gset end a query
            line = before + (";" if terminator and before.strip() else "")
        lines.append(line)
    return "\n".join(lines), metas


def split_sql(sql: str) -> list[tuple[int, str]]:
    """(offset, text) of each statement, as PostgreSQL's parser splits them; when it refuses the text
    (a block that shows a syntax error), as its scanner does: at each `;` outside quotes."""
    import pglast
    from pglast.parser import ParseError, scan

    try:
        return [(s.start, sql[s]) for s in pglast.split(sql, with_parser=True, only_slices=True)]
    except ParseError:
        pass
    try:
        tokens = scan(sql)
    except ParseError:
        return [(len(sql) - len(sql.lstrip()), sql.strip())] if sql.strip() else []
    out, start = [], None
    for tok in tokens:
        if tok.name == "ASCII_59":
            if start is not None:
                out.append((start, sql[start:tok.start]))
            start = None
        elif tok.name not in ("SQL_COMMENT", "C_COMMENT") and start is None:
            start = tok.start
    if start is not None:
        out.append((start, sql[start:]))
    return out


def statements(block: Block, env: dict[str, str] | None = None) -> list[Statement]:
    """The statements of a sql block, with their line in the file and their parse tree."""
    import pglast
    from pglast.parser import ParseError

    sql, _ = sql_text(block, env)
    out = []
    for offset, text in split_sql(sql):
        try:
            parsed = pglast.parse_sql(text)
            node = parsed[0].stmt if len(parsed) == 1 else None
        except ParseError:
            node = None
        out.append(Statement(text.strip(), block.line + 1 + sql.count("\n", 0, offset), node))
    return out
