"""The knowledge: error entries (model and loader), message normalising and the search index.

Owns `content/` and everything read from it, and the one module that talks to Whoosh (`search`).
May import `kb.errors` and `kb.settings` only.
"""
