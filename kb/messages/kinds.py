"""What kind of message a template is, and whether it is too generic to identify anything.

Strong evidence first: a template that a server binary reports as a setting's description
(`postgres --describe-config`, which prints each GUC's short and extra description) is a
`setting`. Everything else is classified by PostgreSQL's message style guide ("Error Message
Style Guide" in the documentation): a primary message starts lower-case and has no final period;
a detail or a hint is a complete sentence (capital letter, final period). A sentence is taken for a
hint when it opens with a word that suggests something to do ("Use ...", "Consider ...", "You might
need ...", "Is another postmaster ...?") and for a detail otherwise. The source code says which of
`errdetail`/`errhint` printed a sentence, but that call is compiled away, so the detail/hint split
is a heuristic: expect most hints to be found and some details to be taken for hints.
Texts that are none of these (psql's help text, column headers, severity words) are `other`.
"""

from __future__ import annotations

import re

from kb.messages.formats import CONVERSION, literal_words, placeholders

KINDS = ("primary", "detail", "hint", "setting", "other")

HINT_OPENINGS = frozenset("""
You Use Consider Perhaps Try Check Increase Set Make Either Specify Run Remove Add To Did Maybe Please
Drop Change Free Stop Execute Create Restart Rebuild Reduce Retry Enable Disable Install Rewrite Cast
Lower Raise Ensure Include Upgrade Turn Provide Is Are Should Look Wait Connect Define Move Rename
Grant Revoke Instead Alternatively Reindex Vacuum Supply Omit Modify Terminate Close Commit Refer See
Explicitly Issue Call Do Write Start Replace Adjust Avoid Kill Shut Edit Delete Specifying Using
""".split())
_ACRONYM = re.compile(r"^[A-Z][A-Z0-9/_-]*[A-Z0-9](?:\b|[a-z]*\b)")  # SSL, GSSAPI, PL/pgSQL, WAL, OID, SQL


def kind_of(template: str, settings: frozenset[str] = frozenset()) -> str:
    """primary, detail, hint, setting or other (see the module docstring for how sure each is)."""
    t = template.rstrip("\n")
    if t in settings:
        return "setting"
    if not t.strip() or t[0].isspace() or not literal_words(t):
        return "other"
    lead = CONVERSION.sub("", t).lstrip("\"'(«“ ")
    if not lead:
        return "other"
    sentence = t.endswith((".", "?", "!", ".)"))
    if lead[0].isupper() and not _ACRONYM.match(lead):
        if sentence:
            return "hint" if lead.split()[0].rstrip(",:") in HINT_OPENINGS else "detail"
        return "primary" if len(literal_words(t)) >= 3 and "\n" not in t else "other"
    return "primary"


def is_generic(template: str, kind: str) -> bool:
    """Too little literal text to say which message a paste holds (`table %s`, `%s: %s`, `out of %s`).

    Such a template may still be shown for a text that matches it, but must never be the only
    evidence for a match: fewer than 2 literal words of 3+ letters, fewer than 10 literal letters,
    more placeholders than such words, or a text that is not a message at all (`other`)."""
    if kind == "other":
        return True
    words = literal_words(template)
    long_words = [w for w in words if len(w) >= 3]
    letters = sum(len(w) for w in words)
    return len(long_words) < 2 or letters < 10 or placeholders(template) > len(long_words)
