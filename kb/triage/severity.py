"""Severity words as servers print them, in English and in every language the catalog has
(FEHLER, ОШИБКА, ERREUR ...), mapped to the English name; and which of them open a message of their
own and which continue the one before (DETAIL, HINT, CONTEXT, STATEMENT, QUERY, LOCATION)."""

from __future__ import annotations

from kb.messages.catalog import MessageCatalog

MESSAGE_LEVELS = ("PANIC", "FATAL", "ERROR", "WARNING", "NOTICE", "LOG", "INFO", "DEBUG")
CONTINUATIONS = ("DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION")
ERRORS = frozenset(("PANIC", "FATAL", "ERROR"))
RANK = {name: i for i, name in enumerate(MESSAGE_LEVELS)}  # lower is worse


_TABLES: dict[int, tuple[MessageCatalog, dict[str, str]]] = {}


def _table(catalog: MessageCatalog) -> dict[str, str]:
    words: dict[str, str] = {}
    for name in MESSAGE_LEVELS + CONTINUATIONS:
        words[name] = name
    for level in [f"DEBUG{i}" for i in range(1, 6)]:
        words[level] = "DEBUG"
    by_name: dict[str, list] = {}
    for m in catalog.messages:
        name = m.template.strip(": \u00a0")
        if name in words and name == m.template.strip().rstrip(":").strip():
            by_name.setdefault(name, []).append(m)
    # the worse level first where a language uses one word for two (Georgian: NOTICE and WARNING), and
    # the server's own words before libpq's
    for name in MESSAGE_LEVELS + CONTINUATIONS:
        for m in sorted(by_name.get(name, []), key=lambda m: m.component != "postgres"):
            for forms in m.translations.values():
                for form in forms:
                    word = form.strip(": \u00a0")
                    if word and word not in words:
                        words[word] = name
    return words


def severity_words(catalog: MessageCatalog) -> dict[str, str]:
    """Every printed severity word -> its English name (FEHLER -> ERROR, ПОДРОБНОСТИ -> DETAIL)."""
    held = _TABLES.get(id(catalog))
    if held is None or held[0] is not catalog:
        held = _TABLES[id(catalog)] = (catalog, _table(catalog))
    return held[1]
