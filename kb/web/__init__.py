"""HTTP surfaces: HTML pages, the JSON API and its OpenAPI description, chat, sign-in, and `kb serve`.

One blueprint per part of the site, templates in `templates/<blueprint>/`. May import `kb.errors`,
`kb.settings`, `kb.service` and, for types, `kb.knowledge` and `kb.runbooks`; never `kb.cli`.
"""
