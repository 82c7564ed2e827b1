"""The message catalog: every message PostgreSQL 13-18's server, PL/pgSQL, libpq and psql can print,
with the translations PostgreSQL ships, SQLSTATEs from each major's errcodes.txt, and the versions
each message exists in.

`catalog.load()` reads the committed data file (`data/catalog.json.gz`); `build` regenerates it from
PostgreSQL's own files (`python -m kb.messages.build`). `match` tells which message a clean text is
an instance of. May import `kb.errors` only; `kb.service` joins it with the entries.
"""
