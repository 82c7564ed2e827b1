"""The one service layer: loads and cross-checks entries with runbooks (`catalog`) and returns plain
data to every surface (`core.Service`).

May import `kb.errors`, `kb.settings`, `kb.knowledge` and `kb.runbooks`; the surfaces (`kb.web`,
`kb.cli`) import it, never the other way round.
"""

from kb.service.core import Service, entry_doc

__all__ = ["Service", "entry_doc"]
