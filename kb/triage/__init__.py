"""Log triage: a whole PostgreSQL or PgBouncer log (plain or gzip, any size, streamed) read into what
went wrong in it: each recognised message with its count, severities, first and last time, SQLSTATEs,
one example with its DETAIL/HINT/STATEMENT/CONTEXT, its entry and runbooks; unrecognised errors
grouped by their normalised text; a per-minute timeline; the three things to look at first.

`source` reads bytes (gzip, binary data, cut lines), `wrappers` peels Docker, Kubernetes and syslog
wrapping, `formats` and `prefix` tell the log's format, `stderr` and `structured` scan it into a
`tally`, `classify` recognises messages, `report` builds the answer. May import `kb.errors`,
`kb.messages` and `kb.service` (whose Service it is given); the surfaces import it.
"""

from kb.triage.errors import TriageError
from kb.triage.run import triage

__all__ = ["TriageError", "triage"]
