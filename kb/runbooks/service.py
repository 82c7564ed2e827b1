"""Runs as the surfaces see them: access checks per target, run views and Markdown transcripts."""

from __future__ import annotations

import logging

from kb.errors import ApiError, BadRequest, NotFound
from kb.runbooks.executor import Executor, Timeouts
from kb.runbooks.engine import Engine
from kb.runbooks.model import ActionStep, QuestionStep
from kb.runbooks.targets import load_targets
from kb.runbooks.transcript import transcript

log = logging.getLogger("kb")
# the local operator (a loopback server with no identities) becomes an admin only by signing in
LOCAL_ADMIN_HOW = ("create an admin token in a terminal with `kb token create NAME --role admin`, then sign in "
                   "at /login with it (once a token exists, browsers that have not signed in can only read)")


class RunService:
    """Starts, advances and shows runs; every decision about who may do what on which target is here."""

    def __init__(self, config, catalog, service):
        self.config = config
        self.catalog = catalog
        self.targets = load_targets(config)
        self.store = service.store  # the one store of the process
        timeouts = Timeouts(config.connect_timeout, config.statement_timeout_ms, config.lock_timeout_ms,
                            config.idle_timeout_ms)
        # the run store holds each target's connection slots, so `cap` holds across workers and hosts
        self.executor = Executor(self.targets, timeouts, config.busy_timeout, config.target_idle_seconds,
                                 slots=self.store)
        # a step can wait at most for a slot, a connection and its statement; a claim older than that
        # (with a margin) belongs to a worker that died
        longest_ms = max([config.statement_timeout_ms] + [getattr(s, "timeout_ms", None) or 0
                                                          for rb in catalog.runbooks.values() for s in rb.steps.values()])
        lease = config.busy_timeout + 2 * config.connect_timeout + longest_ms / 1000 + 30
        self.engine = Engine(catalog.runbooks, self.store, self.executor, max_rows=config.max_rows,
                             max_steps=config.max_steps, search=service.search, entries=catalog.entries,
                             claim_lease=lease, abandon_after=config.abandon_after)

    def close(self) -> None:
        """Close idle target connections and the run store's pool."""
        self.executor.close()
        self.store.close()

    # --- access ----------------------------------------------------------------------------------
    def targets_for(self, ident, kind: str | None = None) -> dict:
        """Targets the identity may run against (names and descriptions only), of one kind if given."""
        items = [t.public() for t in self.targets.values()
                 if ident.role in t.roles and (kind is None or t.kind == kind)]
        return {"count": len(items), "targets": items}

    def _target(self, name: str, ident):
        t = self.targets.get(name)
        if t is None or ident.role not in t.roles:
            # unknown and forbidden look the same: target names are not disclosed to those who cannot use them
            raise NotFound(f"target {name!r}")
        return t

    # --- runs ------------------------------------------------------------------------------------
    def start(self, runbook: str, target: str, params: dict, ident, auto: bool = False) -> dict:
        """Start a run as `ident` (an operator allowed on the target)."""
        rb = self.catalog.runbooks.get(runbook)
        if rb is None:
            raise NotFound(f"runbook {runbook!r}")
        t = self._target(target, ident)
        if t.kind != rb.target_kind:
            raise BadRequest(f"runbook {runbook!r} needs a {rb.target_kind} target; {target!r} is {t.kind}",
                             [{"field": "target", "reason": f"a {rb.target_kind} target"}])
        run = self.engine.start(runbook, target, params, ident.name, auto=auto)
        log.info("run %s started by %s: %s on %s", run["id"], ident.name, runbook, target)
        return self.view(run)

    def advance(self, run_id: str, ident, answer=None, confirm=None, auto=False, step=None) -> dict:
        """Advance a run; confirming an action needs the admin role."""
        run = self._load_readable(run_id, ident)
        self._target(run["target"], ident)
        rb = self.catalog.runbooks[run["runbook"]]
        current = rb.steps.get(run["state"].get("current") or "")
        if isinstance(current, ActionStep) and confirm and not ident.can("admin"):
            self.store.audit(run_id, ident.name, "confirm-refused", {"step": run["state"]["current"], "role": ident.role})
            raise ApiError(403, f"{ident.name} has the {ident.role} role; confirming an action needs admin"
                           + (f": {LOCAL_ADMIN_HOW}" if ident.via == "local" else ""),
                           [{"field": "confirm", "reason": "needs admin"}])
        run = self.engine.advance(run_id, ident.name, answer=answer, confirm=confirm, auto=auto, step=step)
        return self.view(run)

    def _readable_targets(self, ident) -> list[str] | None:
        """Targets whose runs `ident` may read (those it may use); None for all (admins)."""
        if ident.can("admin"):
            return None
        return [t.name for t in self.targets.values() if ident.role in t.roles]

    def _load_readable(self, run_id: str, ident) -> dict:
        run = self.engine.load(run_id)
        allowed = self._readable_targets(ident)
        if allowed is not None and run["target"] not in allowed:
            # as if it did not exist: neither the run nor its target's name is disclosed
            raise NotFound(f"run {run_id!r}")
        return run

    def get(self, run_id: str, ident) -> dict:
        return self.view(self._load_readable(run_id, ident))

    def audit(self, run_id: str, ident) -> list[dict]:
        self._load_readable(run_id, ident)
        return self.store.audit_trail(run_id)

    def recent(self, ident, limit: int = 50) -> dict:
        """The newest runs on targets `ident` may use."""
        if not 1 <= limit <= 200:
            raise BadRequest("limit must be between 1 and 200", [{"field": "limit", "reason": "1..200"}])
        items = self.store.recent(limit, self._readable_targets(ident))
        for r in items:
            r["url"] = f"/runs/{r['id']}"
            if r["status"] == "active":  # one that waited too long is marked abandoned as it is listed
                r["status"] = (self.engine.refresh(r["id"]) or r)["status"]
            r["outcome"] = _outcome(r["status"], r.pop("conclusion_outcome", None))
        return {"count": len(items), "runs": items}

    def abandon(self, run_id: str, ident, why: str) -> dict:
        """End a run its person left part-way as abandoned, so it is not listed as active."""
        self._load_readable(run_id, ident)
        run = self.engine.abandon(run_id, ident.name, why)
        log.info("run %s abandoned by %s", run_id, ident.name)
        return self.view(run)

    def transcript(self, run_id: str, ident, base: str = "") -> str:
        return transcript(self.view(self._load_readable(run_id, ident)), base)

    # --- presentation ----------------------------------------------------------------------------
    def view(self, run: dict) -> dict:
        """The run as plain data for pages, API and chat."""
        rb = self.catalog.runbooks.get(run["runbook"])
        state = run["state"]
        current = None
        if run["status"] == "active" and rb is not None and state.get("current"):
            step = rb.steps[state["current"]]
            current = {"id": state["current"], "kind": step.kind, "title": step.title, "purpose": step.purpose,
                       "waiting_for": state["waiting"]}
            if isinstance(step, QuestionStep):
                current["question"] = step.question
                current["answers"] = [{"value": a.value, "label": a.label} for a in step.answers]
            elif isinstance(step, ActionStep):
                current["sql"] = step.sql
                current["preview"] = state.get("pending")
            else:
                current["sql"] = self.executor.pick_sql(step, None)
        summary = self._summary(run, state, current)
        return {
            "id": run["id"],
            "runbook": {"id": run["runbook"], "title": rb.title if rb else run["runbook"], "url": f"/runbooks/{run['runbook']}"},
            "target": run["target"],
            "params": state["params"],
            "status": run["status"],
            "created_by": run["created_by"],
            "created_at": run["created_at"],
            "updated_at": run.get("updated_at") or run["created_at"],
            "current": current,
            "outcome": _outcome(run["status"], (state.get("conclusion") or {}).get("outcome")),
            "conclusion": state.get("conclusion"),
            "failure": state.get("failure"),
            "steps": run["steps"],
            "summary": summary,
            "links": {"self": f"/api/v1/runs/{run['id']}", "page": f"/runs/{run['id']}",
                      "transcript": f"/api/v1/runs/{run['id']}/transcript"},
        }

    @staticmethod
    def _summary(run, state, current) -> str:
        if run["status"] == "finished" and state.get("conclusion"):
            c = state["conclusion"]
            label = {"problem": "problem found", "healthy": "healthy"}.get(c.get("outcome"), "inconclusive")
            return f"Concluded ({label}): {c['verdict']}"
        if run["status"] == "failed" and state.get("failure"):
            f = state["failure"]
            return f"Failed: {f.get('condition')}: {f.get('message')}"
        if run["status"] == "abandoned":
            return f"Abandoned: {(state.get('failure') or {}).get('message')}"
        if run["status"] == "stopped":
            return f"Stopped: {(state.get('failure') or {}).get('message')}"
        if current is None:
            return run["status"]
        verb = {"answer": "Waiting for an answer", "confirm": "Waiting for confirmation", "run": "Ready to run"}
        return f"{verb.get(current['waiting_for'], 'At')}: {current['title']}"


def _outcome(status: str, concluded: str | None) -> str | None:
    """What a run showed: its conclusion's outcome; inconclusive when it failed, stopped or was
    abandoned before concluding; None while it is still going."""
    if status == "finished":
        return concluded or "inconclusive"
    return None if status == "active" else "inconclusive"
