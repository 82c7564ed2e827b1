"""`kb run`, `kb token` and `kb sandbox`: the CLI commands about runs, identities and scenarios."""
