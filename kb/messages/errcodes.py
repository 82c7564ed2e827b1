"""Parses PostgreSQL's `src/backend/utils/errcodes.txt` (installed as `share/errcodes.txt`).

Its lines are `Section: Class 08 - Connection Exception` headers and
`08006    E    ERRCODE_CONNECTION_FAILURE    connection_failure` rows: the SQLSTATE, its type
(E error, W warning, S success), the C macro, and the condition name PL/pgSQL accepts (absent for
a few codes PL/pgSQL cannot trap by name). Exact: this is the file the server's own code is
generated from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SECTION = re.compile(r"^Section: Class (\w\w) - (.+)$")
_ROW = re.compile(r"^([0-9A-Z]{5})\s+([EWS])\s+(ERRCODE_\w+)(?:\s+(\w+))?\s*$")


@dataclass(frozen=True)
class ErrCode:
    code: str
    type: str
    macro: str
    condition: str | None
    class_code: str
    class_name: str


def parse_errcodes(path: Path) -> list[ErrCode]:
    """Every row of one errcodes.txt, with its class."""
    out, class_code, class_name = [], "", ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if m := _SECTION.match(line):
            class_code, class_name = m.group(1), m.group(2).strip()
            continue
        if m := _ROW.match(line):
            out.append(ErrCode(m.group(1), m.group(2), m.group(3), m.group(4), class_code or m.group(1)[:2], class_name))
    return out
