"""Reads GNU gettext `.mo` files: English msgid (and msgid_plural) to translated forms.

Python's `gettext` keeps only the singular msgid of a plural entry; the catalog needs both, so the
format (a header, two tables of (length, offset) pairs) is read here directly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MoEntry:
    """One translated message: the English template(s) and the translated form(s)."""

    msgid: str
    plural: str | None
    forms: tuple[str, ...]
    context: str | None = None


def read_mo(path: Path) -> list[MoEntry]:
    """Every entry of a .mo file except the header (msgid "")."""
    data = Path(path).read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">"
    _rev, count, orig_off, trans_off = struct.unpack(order + "4I", data[4:20])
    out = []
    for i in range(count):
        olen, opos = struct.unpack(order + "2I", data[orig_off + 8 * i: orig_off + 8 * i + 8])
        tlen, tpos = struct.unpack(order + "2I", data[trans_off + 8 * i: trans_off + 8 * i + 8])
        orig = data[opos:opos + olen].decode("utf-8")
        trans = data[tpos:tpos + tlen].decode("utf-8")
        if not orig:
            continue
        context = None
        if "\x04" in orig:
            context, orig = orig.split("\x04", 1)
        ids = orig.split("\x00")
        forms = tuple(f for f in trans.split("\x00"))
        if not any(forms):
            continue
        out.append(MoEntry(ids[0], ids[1] if len(ids) > 1 else None, forms, context))
    return out
