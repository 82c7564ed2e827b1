"""Problems found while loading files, reported as `path:line: field: reason`, with YAML line lookup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import yaml

# libyaml's C parser when PyYAML was built with it (it is on PyPI's wheels): 10x faster loading
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """yaml.safe_load with the C parser when available."""
    return yaml.load(text, Loader=SafeLoader)


# pydantic puts the tag of a discriminated union into `loc`; these are not keys of the file
UNION_TAGS = {"all", "any", "not", "leaf", "diagnostic", "question", "action", "conclusion",
              "function-after[_check(), Param]"}


@dataclass(frozen=True)
class Problem:
    """One problem in one file: where it is, which field, and why."""

    path: str
    line: int
    field: str
    reason: str
    level: str = "error"  # or "warning"
    # what a dangling reference points at, ("entry", slug) or ("runbook", id): when that file failed
    # to load, this problem follows from its error and is folded into it
    ref: tuple[str, str] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        prefix = "" if self.level == "error" else "warning: "
        return f"{self.path}:{self.line}: {prefix}{self.field}: {self.reason}"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "field": self.field,
                "reason": self.reason, "level": self.level}


def fold_knock_on(problems: list[Problem], broken: dict[tuple[str, str], str]) -> list[Problem]:
    """Problems with references to a file that failed to load (`broken`: ref -> its path) folded into
    that file's first error, which says how many lines it hides; one broken entry otherwise makes
    every entry and runbook linking to it report "no entry with slug ..." too."""
    failed = {p.path for p in problems if p.level == "error"}
    foldable = {ref for ref, path in broken.items() if path in failed}  # else there is nothing to fold into
    hidden: dict[tuple[str, str], int] = {}
    kept = []
    for p in problems:
        if p.ref in foldable:
            hidden[p.ref] = hidden.get(p.ref, 0) + 1
        else:
            kept.append(p)
    for ref, n in hidden.items():
        i = next(i for i, p in enumerate(kept) if p.path == broken[ref] and p.level == "error")
        word = "reference" if n == 1 else "references"
        kept[i] = replace(kept[i], reason=f"{kept[i].reason} (and {n} {word} to {ref[1]!r} elsewhere, hidden: "
                                          f"{'it follows' if n == 1 else 'they follow'} from this error)")
    return kept


def display_path(path: str) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def loc_to_field(loc) -> str:
    """Pydantic `errors()[].loc` as `a.b[0].c`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


class YamlLines:
    """Line numbers of the nodes of a YAML document, looked up by pydantic-style locations."""

    def __init__(self, text: str, line_offset: int = 0):
        self._text = text
        self._node = None
        self.offset = line_offset

    @property
    def node(self):
        if self._node is None:  # composed only when a problem needs its line
            self._node = yaml.compose(self._text, Loader=SafeLoader)
        return self._node

    @classmethod
    def compose(cls, text: str, line_offset: int = 0) -> "YamlLines":
        """Line lookup over `text` (already known to parse); the node tree is built on first use."""
        return cls(text, line_offset)

    def line(self, loc) -> int:
        """1-based line of the deepest node that `loc` reaches."""
        return self.resolve(loc)[1]

    def resolve(self, loc) -> tuple[tuple, int]:
        """(loc without pydantic's union tags, 1-based line of the deepest node it reaches)."""
        node = self.node
        best = node.start_mark.line if node is not None else 0
        kept = []
        for n, part in enumerate(loc):
            if part in UNION_TAGS and not self._has(node, part):
                continue
            kept.append(part)
            nxt = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == str(part):
                        nxt = value
                        best = key.start_mark.line
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    nxt = node.value[part]
                    best = nxt.start_mark.line
            if nxt is None:
                kept += [p for p in loc[n + 1:] if p not in UNION_TAGS]
                break
            node = nxt
        return tuple(kept), best + 1 + self.offset

    @staticmethod
    def _has(node, key) -> bool:
        return isinstance(node, yaml.MappingNode) and any(k.value == str(key) for k, _ in node.value)


def yaml_error_problem(path: str, exc: yaml.YAMLError, field: str, line_offset: int = 0) -> Problem:
    """A YAML syntax error as a Problem at the line the parser names."""
    mark = getattr(exc, "problem_mark", None)
    line = (mark.line + 1 if mark is not None else 1) + line_offset
    reason = getattr(exc, "problem", None) or str(exc)
    return Problem(path, line, field, f"invalid YAML: {reason}")


def pydantic_problems(path: str, exc, lines: YamlLines, prefix: tuple = ()) -> list[Problem]:
    """Every error of a pydantic ValidationError as a Problem with its line."""
    out = []
    for err in exc.errors():
        loc, line = lines.resolve(prefix + tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(Problem(path, line, loc_to_field(loc), msg))
    return out
