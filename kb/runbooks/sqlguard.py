"""Decides, with PostgreSQL's own parser, whether a step's SQL may run: `kb check` and the executor
both call `check()`, so a runbook that passes the check is also what the executor lets through.

A diagnostic must be exactly one statement of a read-only kind (SELECT/VALUES/TABLE without INTO or
row locks, SHOW, EXPLAIN without ANALYZE), must call only functions on an allow-list, and may read
only catalog relations (pg_catalog, information_schema) and its own CTEs. An action (run only after an
admin confirms) must be exactly one statement too, but may change things; that is what it is for.

Why an allow-list of functions rather than a deny-list: a read-only transaction does not stop a
function from acting outside the transaction (pg_terminate_backend, dblink_exec, pg_advisory_lock,
pg_reload_conf, lo_export, query_to_xml running SQL given as a string ...), and every extension can add
more; a deny-list is always one function short. The allow-list is what diagnostics need to look at
the server; a runbook that needs another read-only function names it here, in one reviewed place.
Why catalog relations only: selecting from a user's view runs that view's functions.
"""

from __future__ import annotations

import re

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

# functions that only read: arithmetic, text, time, arrays, and the server's own monitoring functions
READ_ONLY_FUNCTIONS = frozenset("""
abs ceil ceiling floor round trunc div mod power sqrt greatest least random_normal width_bucket
count sum min max avg array_agg string_agg bool_and bool_or every mode percentile_cont percentile_disc
stddev variance json_agg jsonb_agg json_object_agg jsonb_object_agg
left right length char_length octet_length lower upper substr substring split_part starts_with strpos position
btrim ltrim rtrim trim replace translate concat concat_ws format quote_ident quote_literal md5 repeat lpad rpad
regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_like initcap to_hex encode decode
to_char to_number to_timestamp to_date date_trunc date_part extract age now clock_timestamp
statement_timestamp transaction_timestamp timeofday make_interval justify_interval isfinite
array_length array_to_string array_position array_remove array_append cardinality unnest
generate_series generate_subscripts string_to_array jsonb_array_elements json_array_elements
jsonb_build_object json_build_object jsonb_each jsonb_object_keys to_json to_jsonb row_to_json
family host hostmask masklen network text inet abbrev
current_database current_schema current_schemas current_setting version format_type pg_typeof
to_regclass to_regrole to_regnamespace to_regproc obj_description col_description shobj_description
pg_backend_pid pg_blocking_pids pg_safe_snapshot_blocking_pids pg_is_in_recovery pg_is_wal_replay_paused
pg_current_wal_lsn pg_current_wal_insert_lsn pg_current_wal_flush_lsn pg_last_wal_receive_lsn
pg_last_wal_replay_lsn pg_last_xact_replay_timestamp pg_wal_lsn_diff pg_walfile_name
pg_postmaster_start_time pg_conf_load_time pg_get_userbyid pg_get_indexdef pg_get_constraintdef
pg_get_expr pg_get_viewdef pg_get_functiondef pg_get_triggerdef pg_get_serial_sequence
pg_size_pretty pg_size_bytes pg_table_size pg_relation_size pg_total_relation_size pg_indexes_size
pg_database_size pg_tablespace_size pg_column_size pg_partition_root pg_partition_ancestors
pg_has_role has_table_privilege has_database_privilege has_schema_privilege has_function_privilege
mxid_age pg_current_snapshot pg_snapshot_xmin pg_snapshot_xmax txid_current_snapshot txid_snapshot_xmin
pg_control_checkpoint pg_control_system pg_stat_get_backend_pid pg_stat_get_activity
pg_sleep pg_get_keywords pg_listening_channels pg_notification_queue_usage pg_jit_available
""".split())

CATALOG_SCHEMAS = ("pg_catalog", "information_schema")
PARAM_RE = re.compile(r"%\((\w+)\)s")


class Refused(ValueError):
    """The SQL may not run as this kind of step; the message says which rule and where."""


def _parse(sql: str):
    # parameters are bound by the extended protocol and cannot change the statement's structure;
    # a literal stands in for each so the parser sees the same statement
    text = PARAM_RE.sub("'0'", sql).replace("%%", "%")
    try:
        return parse_sql(text)
    except ParseError as exc:
        raise Refused(f"does not parse: {exc.args[0]}") from None


def single_statement(sql: str):
    tree = _parse(sql)
    if len(tree) != 1:
        raise Refused(f"must be exactly one SQL statement, found {len(tree)}")
    return tree[0].stmt


class _ReadOnly(Visitor):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.ctes: set[str] = set()
        self.relations: list[ast.RangeVar] = []

    def visit_CommonTableExpr(self, ancestors, node):
        self.ctes.add(node.ctename)

    def visit_FuncCall(self, ancestors, node):
        names = [n.sval for n in node.funcname]
        if len(names) > 1 and names[0] != "pg_catalog":
            self.problems.append(f"calls {'.'.join(names)}(): only pg_catalog functions may be called")
        elif names[-1].lower() not in READ_ONLY_FUNCTIONS:
            self.problems.append(f"calls {names[-1]}(), which is not on the list of read-only functions")

    def visit_RangeVar(self, ancestors, node):
        self.relations.append(node)

    def visit_A_Expr(self, ancestors, node):
        names = [n.sval for n in node.name or ()]
        if len(names) > 1 and names[0] != "pg_catalog":
            self.problems.append(f"uses operator {'.'.join(names)}: only pg_catalog operators may be used")

    def _writes(self, what: str) -> None:
        self.problems.append(f"contains {what}, which changes data")

    def visit_InsertStmt(self, ancestors, node):
        self._writes("INSERT")

    def visit_UpdateStmt(self, ancestors, node):
        self._writes("UPDATE")

    def visit_DeleteStmt(self, ancestors, node):
        self._writes("DELETE")

    def visit_MergeStmt(self, ancestors, node):
        self._writes("MERGE")

    def visit_SelectStmt(self, ancestors, node):
        if node.intoClause is not None:
            self.problems.append("SELECT ... INTO creates a table")
        if node.lockingClause:
            self.problems.append("SELECT ... FOR UPDATE/SHARE takes row locks")


def check(sql: str, kind: str = "diagnostic", target_kind: str = "postgresql") -> None:
    """Raise Refused unless `sql` is one statement a step of `kind` ("diagnostic" or "action") may run."""
    stmt = single_statement(sql)
    if target_kind == "pgbouncer":
        if not isinstance(stmt, ast.VariableShowStmt):
            raise Refused("pgbouncer admin console steps may only run SHOW commands")
        return
    if kind == "action":
        return
    if isinstance(stmt, ast.VariableShowStmt):
        return
    if isinstance(stmt, ast.ExplainStmt):
        for opt in stmt.options or ():
            if opt.defname.lower() == "analyze" and getattr(opt.arg, "boolval", True) not in (False, 0):
                raise Refused("EXPLAIN ANALYZE executes the statement")
        stmt = stmt.query
    if not isinstance(stmt, ast.SelectStmt):
        kind_of = type(stmt).__name__.removesuffix("Stmt")
        raise Refused(f"a diagnostic must be a SELECT, SHOW or EXPLAIN, not {kind_of} ({sql.split()[0].upper()} ...)")
    visitor = _ReadOnly()
    visitor(stmt)
    for rel in visitor.relations:
        schema, name = rel.schemaname, rel.relname
        if schema in CATALOG_SCHEMAS or (schema is None and (name in visitor.ctes or name.startswith("pg_"))):
            continue
        visitor.problems.append(f"reads {schema + '.' if schema else ''}{name}: diagnostics read only "
                                "catalog relations (pg_catalog, information_schema) and their own CTEs")
    if visitor.problems:
        raise Refused("; ".join(dict.fromkeys(visitor.problems)))
