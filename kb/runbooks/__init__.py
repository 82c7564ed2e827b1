"""Guided runbooks: model and loader, conditions, targets, the read-only executor, failure
classification, the run engine, the run store and transcripts.

Owns `runbooks/`, every connection to a diagnosed target (`executor`) and the run store (`store`).
May import `kb.errors`, `kb.settings` and `kb.knowledge` (for the loaders' problem reports).
"""
