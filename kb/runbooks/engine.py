"""The run state machine: executes steps, picks branches, and commits every finished step at once.

The run store coordinates every worker and host: before a step's SQL runs, the run is claimed in the
store with an update conditional on the version this request read, so of two requests (two workers,
two hosts) that saw the same step, exactly one runs it and the other gets 409. An action's claim is
audited before the action runs and is never taken over: if its worker dies mid-action, the run says
the action may have run instead of running it again. A diagnostic's claim lapses after its longest
possible wait, so a run whose worker died can go on.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time

from kb.runbooks.classify import classify
from kb.runbooks.effect import effect
from kb.runbooks.conditions import Result, evaluate, fill
from kb.errors import BadRequest, NotFound, RunStateError
from kb.runbooks.executor import Executor
from kb.runbooks.store import RunStore, now
from kb.runbooks.model import ActionStep, ConclusionStep, DiagnosticStep, QuestionStep, Runbook, coerce_param

BUILTIN_PARAMS = {"preview_ids"}


def _summary_rows(columns: list[str], rows: list[list]) -> str:
    if not rows:
        return "no rows"
    first = ", ".join(f"{c}={_short(v)}" for c, v in list(zip(columns, rows[0]))[:5])
    return f"{len(rows)} row{'s' if len(rows) != 1 else ''}; first: {first}"


def _short(v) -> str:
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


class Engine:
    """Starts and advances runs of runbooks against targets."""

    def __init__(self, runbooks: dict[str, Runbook], store: RunStore, executor: Executor, *, max_rows: int,
                 max_steps: int, search=None, entries=None, claim_lease: float = 120.0,
                 abandon_after: float = 86400.0):
        self.runbooks = runbooks
        self.abandon_after = abandon_after  # seconds a run may wait for a person before it is abandoned
        self.claim_lease = claim_lease  # seconds after which a diagnostic's claim is deemed abandoned
        self.store = store
        self.executor = executor
        self.max_rows = max_rows
        self.max_steps = max_steps
        self.search = search
        self.entries = entries or {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # --- public --------------------------------------------------------------------------------
    def validate_params(self, rb: Runbook, given: dict) -> dict:
        """Typed, bounded parameters with defaults filled; BadRequest listing every problem."""
        errors, out = [], {}
        for name in given:
            if name not in rb.params:
                errors.append({"field": f"params.{name}", "reason": "unknown parameter"})
        for name, p in rb.params.items():
            if name in given and given[name] not in (None, ""):
                try:
                    out[name] = coerce_param(p, given[name])
                except ValueError as exc:
                    errors.append({"field": f"params.{name}", "reason": str(exc)})
            elif p.default is not None:
                out[name] = coerce_param(p, p.default)
            else:
                errors.append({"field": f"params.{name}", "reason": "required"})
        if errors:
            raise BadRequest("invalid runbook parameters", errors)
        return out

    def start(self, runbook_id: str, target: str, params: dict, actor: str, auto: bool = False) -> dict:
        """Create a run at the start step (an action's preview or a conclusion is handled on arrival)."""
        rb = self.runbooks.get(runbook_id)
        if rb is None:
            raise NotFound(f"runbook {runbook_id!r}")
        values = self.validate_params(rb, params or {})
        run_id = secrets.token_hex(6)
        created = now()
        state = {"params": values, "current": rb.start, "waiting": "run", "pending": None, "conclusion": None,
                 "failure": None, "seq": 0}
        self.store.create_run({"id": run_id, "runbook": rb.id, "target": target, "status": "active",
                               "created_at": created}, state, actor)
        with self._lock(run_id):
            run = self.store.load_run(run_id)
            run = self._arrive(run, rb, rb.start, actor)
            if auto:
                run = self._auto(run, rb, actor)
        return run

    def advance(self, run_id: str, actor: str, answer: str | None = None, confirm: bool | None = None,
                auto: bool = False, step: str | None = None) -> dict:
        """Run, answer or confirm the current step; with `auto`, keep running diagnostics after it.

        `step` is the step the client saw: when the run has moved on, RunStateError (409) instead of
        acting on a step the client never saw."""
        with self._lock(run_id):
            run = self.load(run_id)
            current = run["state"].get("current")
            if step is not None and (step != current or run["status"] != "active"):
                where = f"is at step {current!r}" if run["status"] == "active" else f"is {run['status']}"
                raise RunStateError(f"step {step!r} is no longer current: the run {where}; reload it")
            rb = self.runbooks[run["runbook"]]
            run = self._step(run, rb, actor, answer, confirm)
            if auto:
                run = self._auto(run, rb, actor)
            return run

    def load(self, run_id: str) -> dict:
        run = self.store.load_run(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r}")
        if run["runbook"] not in self.runbooks:
            raise RunStateError(f"runbook {run['runbook']!r} of this run is no longer deployed")
        return self._abandon_if_stale(run)

    def refresh(self, run_id: str) -> dict | None:
        """The run as stored, marked abandoned if it waited too long, even when its runbook is no
        longer deployed (so lists never show it active forever); None when there is no such run."""
        run = self.store.load_run(run_id)
        return None if run is None else self._abandon_if_stale(run)

    def abandon(self, run_id: str, actor: str, why: str) -> dict:
        """End an active run as abandoned now (its person left it, e.g. `kb run` interrupted at a prompt)."""
        with self._lock(run_id):
            run = self.load(run_id)
            state = run["state"]
            if run["status"] != "active":
                return run
            if state.get("claim"):
                raise RunStateError(f"step {state['claim']['step']!r} is being run; it cannot be abandoned now")
            message = f"{why} at step {state.get('current')!r}; start a new run to look again"
            return self._end_abandoned(run, actor, message, {"step": state.get("current"), "by": actor})

    def _end_abandoned(self, run: dict, actor: str, message: str, detail: dict) -> dict:
        state = run["state"]
        new = dict(state, waiting=None, pending=None,
                   failure={"condition": "abandoned", "message": message, "step": state.get("current")})
        new.pop("claim", None)
        try:
            run["version"] = self.store.commit_step(run["id"], run["version"], "abandoned", new, None, actor, "abandon",
                                                    detail)
        except RunStateError:
            return self.store.load_run(run["id"]) or run  # advanced or abandoned meanwhile by another worker
        run["status"], run["state"] = "abandoned", new
        return run

    def _abandon_if_stale(self, run: dict) -> dict:
        """An active run nobody advanced for `abandon_after` seconds ends as `abandoned`: what it saw
        is that old, so it must not be picked up again as if it were current."""
        state = run["state"]
        if run["status"] != "active" or self.abandon_after <= 0:
            return run
        claim = state.get("claim")
        if claim and time.time() - claim["ts"] < self.claim_lease:
            return run  # a worker is on it right now
        try:
            idle = time.time() - dt.datetime.fromisoformat(run["updated_at"].replace("Z", "+00:00")).timestamp()
        except (AttributeError, ValueError):
            return run
        if idle < self.abandon_after:
            return run
        waited = {"answer": "an answer", "confirm": "a confirmation"}.get(state.get("waiting"), "the next step")
        message = (f"waited {_duration(idle)} for {waited} at step {state.get('current')!r}, longer than "
                   f"{_duration(self.abandon_after)}; start a new run to look again")
        if claim and claim.get("kind") == "action":  # its worker died mid-action: say so, not "waited"
            message = (f"the action {claim['step']!r} was claimed by {claim['by']} at {claim['at']} and its outcome "
                       "was never recorded, so it may have run: check the target, then start a new run")
        return self._end_abandoned(run, "kb", message, {"step": state.get("current"), "idle_seconds": int(idle)})

    # --- machinery -----------------------------------------------------------------------------
    def _lock(self, run_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(run_id, threading.Lock())

    def _auto(self, run, rb, actor):
        while run["status"] == "active" and run["state"]["waiting"] == "run":
            run = self._step(run, rb, actor, None, None)
        return run

    def _claim(self, run, sid: str, actor: str, kind: str) -> None:
        """Take the run's current step for this request, in the store, before its SQL runs."""
        held = run["state"].get("claim")
        if held:
            age = time.time() - held["ts"]
            if held["kind"] == "action":
                if age < self.claim_lease:
                    raise RunStateError(f"the action {held['step']!r} is being run by {held['by']} (since {held['at']})")
                raise RunStateError(f"the action {held['step']!r} was claimed by {held['by']} at {held['at']} and its "
                                    "outcome was never recorded, so it may have run: check the target, then start a "
                                    "new run")
            if age < self.claim_lease:
                raise RunStateError(f"step {held['step']!r} is being run by {held['by']} (since {held['at']}); reload the run")
        state = dict(run["state"], claim={"step": sid, "kind": kind, "by": actor, "at": now(), "ts": time.time()})
        event = "claim" if kind == "action" else None
        run["version"] = self.store.commit_step(run["id"], run["version"], run["status"], state, None, actor, event,
                                                {"step": sid})
        run["state"] = state

    def _step(self, run, rb: Runbook, actor: str, answer, confirm) -> dict:
        state = run["state"]
        if run["status"] != "active":
            raise RunStateError(f"the run is {run['status']}; start a new run to go again")
        sid = state["current"]
        step = rb.steps[sid]
        if self._executed(run) >= self.max_steps:
            return self._stop(run, actor, f"step limit of {self.max_steps} reached")
        if isinstance(step, ActionStep) and state.get("waiting") != "confirm":
            # the preview was never stored (its worker died on arrival): show it before any confirmation
            if confirm is not None or answer is not None:
                raise RunStateError("the action's preview has not been shown yet; reload the run")
            return self._arrive(run, rb, sid, actor)
        if isinstance(step, DiagnosticStep):
            if answer is not None or confirm is not None:
                raise BadRequest("the current step is a diagnostic: advance without an answer or confirmation")
            self._claim(run, sid, actor, "diagnostic")
            record, nxt = self._diagnostic(run, rb, sid, step)
        elif isinstance(step, QuestionStep):
            values = [a.value for a in step.answers]
            if answer is None or confirm is not None:
                raise BadRequest(f"this step asks: {step.question}", [{"field": "answer", "reason": f"one of: {', '.join(values)}"}])
            if answer not in values:
                raise BadRequest(f"{answer!r} is not an answer to this question",
                                 [{"field": "answer", "reason": f"one of: {', '.join(values)}"}])
            chosen = next(a for a in step.answers if a.value == answer)
            record = self._record(run, sid, step, outcome="answered", answer=answer,
                                  summary=f"answered {chosen.label!r}")
            record["branch"] = self._branch(rb, chosen.goto, f"answer: {chosen.label}")
            nxt = chosen.goto
        elif isinstance(step, ActionStep):
            if confirm is None or answer is not None:
                raise BadRequest("this step is an action: send confirm true to run it or false to skip it",
                                 [{"field": "confirm", "reason": "true or false"}])
            if confirm:
                self._claim(run, sid, actor, "action")
            record, nxt = self._action(run, rb, sid, step, confirm)
        else:
            raise RunStateError("the run has concluded")
        record["actor"] = actor
        event = {"answered": "answer", "confirmed": "confirm", "declined": "decline"}.get(record["outcome"], "step")
        return self._commit_and_arrive(run, rb, record, nxt, actor, event)

    def _executed(self, run) -> int:
        return sum(1 for s in run["steps"] if s["kind"] in ("diagnostic", "action", "question"))

    def _record(self, run, sid, step, **fields) -> dict:
        rec = {"seq": run["state"]["seq"] + 1, "step_id": sid, "kind": step.kind, "title": step.title,
               "purpose": step.purpose, "at": now(), "outcome": "ok", "branch": None, "error": None}
        rec.update(fields)
        return rec

    def _branch(self, rb, goto: str, reason: str, say: str | None = None) -> dict:
        return {"goto": goto, "goto_title": rb.steps[goto].title, "reason": reason, "say": say}

    def _execute(self, run, step, *, write=False, sql=None, reserved=False, extra_params=None):
        """Run SQL; returns (sql_as_run, result) or (None, classified error)."""
        params = dict(run["state"]["params"])
        params.update(extra_params or {})
        target = self.executor.targets[run["target"]]
        try:
            text, res = self.executor.run(run["target"], step, params, write=write, sql=sql, reserved=reserved,
                                          statement_ms=getattr(step, "timeout_ms", None),
                                          label=f"kb run {run['id']}")
            return text, res, None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a classified outcome
            connected = getattr(exc, "sqlstate", None) is not None or not _is_connect_error(exc)
            outcome = classify(exc, target.secrets(), self.search, self.entries, connected=connected)
            return sql or getattr(step, "sql", None), None, outcome

    def _result_fields(self, text, res, params) -> dict:
        truncated = res.row_count > self.max_rows
        return {"sql": text, "params": params, "columns": res.columns, "rows": res.rows[: self.max_rows],
                "row_count": res.row_count, "truncated": truncated, "duration_ms": res.duration_ms,
                "server_version": res.server_version, "status_message": res.status}

    def _diagnostic(self, run, rb, sid, step: DiagnosticStep):
        params = run["state"]["params"]
        # once a run had to use the reserved-slot connection, later steps stay on it
        reserved = step.connection == "reserved" or bool(run["state"].get("via_reserved"))
        text, res, err = self._execute(run, step, reserved=reserved)
        if err is not None:
            return self._error_record(run, rb, sid, step, text, err, step.on_error)
        rec = self._record(run, sid, step, **self._result_fields(text, res, params))
        if reserved:
            rec["via_reserved"] = True
        result = Result(res.columns, res.rows, res.row_count)
        for br in step.branches:
            if br.otherwise:
                first = next((b for b in step.branches if not b.otherwise), None)
                why = evaluate(first.when, result, params)[1] if first is not None else ""
                reason = f"otherwise ({why})" if why else "otherwise"
                rec["branch"] = self._branch(rb, br.goto, reason, fill(br.say, result, params))
                break
            ok, why = evaluate(br.when, result, params)
            if ok:
                rec["branch"] = self._branch(rb, br.goto, why, fill(br.say, result, params))
                break
        rec["summary"] = _summary_rows(res.columns, res.rows)
        if rec["truncated"]:
            rec["summary"] += f" (kept {self.max_rows} of {res.row_count} rows)"
        return rec, rec["branch"]["goto"]

    def _error_record(self, run, rb, sid, step, text, err, on_error: dict):
        rec = self._record(run, sid, step, sql=text, outcome="error", error=err,
                           summary=f"{err['condition']}: {err['message']}")
        for key in err["keys"]:
            if key in on_error:
                rec["branch"] = self._branch(rb, on_error[key], f"on error {key}")
                return rec, on_error[key]
        return rec, None

    def _action(self, run, rb, sid, step: ActionStep, confirm: bool):
        pending = run["state"].get("pending") or {}
        if not confirm:
            rec = self._record(run, sid, step, outcome="declined", summary="declined; nothing was changed")
            rec["branch"] = self._branch(rb, step.on_decline, "not confirmed")
            return rec, step.on_decline
        ids = [r[0] for r in (pending.get("rows") or [])]
        text, res, err = self._execute(run, step, write=True, sql=step.sql, extra_params={"preview_ids": ids},
                                       reserved=bool(run["state"].get("via_reserved")))
        if err is not None:
            return self._error_record(run, rb, sid, step, text, err, step.on_error)
        rec = self._record(run, sid, step, outcome="confirmed", **self._result_fields(text, res, run["state"]["params"]))
        # the command tag stays in status_message; people read what it did
        rec["effect"] = effect(step, res.columns, res.rows, res.row_count, res.status,
                               len(ids) if "preview_ids" in step.sql else None)
        rec["summary"] = f"confirmed: {rec['effect']}"
        rec["branch"] = self._branch(rb, step.then, "action ran")
        return rec, step.then

    def _commit_and_arrive(self, run, rb, record, nxt, actor, event) -> dict:
        state = dict(run["state"])
        state.pop("claim", None)
        state["seq"] = record["seq"]
        state["pending"] = None
        if record.get("via_reserved"):
            state["via_reserved"] = True
        status = "active"
        if nxt is None:
            status = "failed"
            state["failure"] = record.get("error")
            state["current"] = None
            state["waiting"] = None
        else:
            state["current"] = nxt
            state["waiting"] = "run"
        run["version"] = self.store.commit_step(run["id"], run["version"], status, state, record, actor, event,
                                                {"step": record["step_id"], "outcome": record["outcome"]})
        run["status"] = status
        run["state"] = state
        run["steps"].append(record)
        if nxt is None:
            return run
        return self._arrive(run, rb, nxt, actor)

    def _connect_failure(self, last: dict | None) -> dict | None:
        """What a conclusion says when the run got there because kb could not connect.

        A runbook's generic "cannot connect" conclusion guesses at the causes; when the knowledge
        base recognised the failure (a role that does not exist, a password refused ...), the run
        says exactly that, sends the reader to that entry and its runbooks, and claims nothing about
        the server, which it never saw. Failures the runbook routes by their entry keep its own text.
        """
        err = (last or {}).get("error") or {}
        reason = ((last or {}).get("branch") or {}).get("reason", "")
        if last is None or last.get("outcome") != "error" or err.get("phase") != "connect" or not err.get("entry") \
                or reason.startswith("on error entry:"):
            return None
        entry = self.entries.get(err["entry"]["slug"])
        if entry is None:
            return None
        title = entry.meta.title
        fix = [{"entry": entry.slug, "title": title, "url": entry.url, "label": title}]
        for rid in entry.meta.runbooks:
            rb = self.runbooks.get(rid)
            if rb is not None:
                fix.append({"entry": entry.slug, "title": rb.title, "url": f"/runbooks/{rid}",
                            "label": f"Guided runbook: {rb.title}"})
        return {"title": f"kb could not connect: {title}", "outcome": "inconclusive", "status": "unknown", "fix": fix,
                "verdict": f"Connecting to the target failed with \"{err['message']}\", which is {title}. kb saw "
                           "nothing on the server, so this run cannot say anything about it.",
                "body": "Fix the connection first (the entry says how), then run this runbook again."}

    def _arrive(self, run, rb, sid, actor) -> dict:
        """Entering a step: conclusions finish the run, actions show their preview, questions wait."""
        step = rb.steps[sid]
        state = dict(run["state"])
        if isinstance(step, ConclusionStep):
            last = run["steps"][-1] if run["steps"] else None
            result = Result(last.get("columns") or [], last.get("rows") or [], last.get("row_count") or 0) if last else None
            fix = []
            for link in step.fix:
                e = self.entries.get(link.entry)
                url = f"/errors/{link.entry}" + (f"#{link.section}" if link.section else "")
                title = e.meta.title if e else link.entry
                fix.append({"entry": link.entry, "title": title, "url": url,
                            "label": link.label or _link_label(e, link.section, title)})
            verdict = fill(step.verdict, result, state["params"])
            conclusion = {"step_id": sid, "title": step.title, "verdict": verdict, "outcome": step.outcome,
                          "status": step.status,
                          "body": fill(step.body, result, state["params"]), "fix": fix}
            conclusion.update(self._connect_failure(last) or {})
            rec = self._record(run, sid, step, outcome="concluded", summary=conclusion["verdict"], conclusion=conclusion)
            state.update(seq=rec["seq"], current=sid, waiting=None, conclusion=conclusion)
            run["version"] = self.store.commit_step(run["id"], run["version"], "finished", state, rec, actor,
                                                    "conclude", {"step": sid, "status": conclusion["status"]})
            run["status"] = "finished"
        elif isinstance(step, ActionStep):
            self._claim(run, sid, actor, "preview")
            state = dict(run["state"])
            state.pop("claim")
            text, res, err = self._execute(run, step, sql=step.preview_sql,
                                           reserved=bool(state.get("via_reserved")))
            if err is not None:
                rec, nxt = self._error_record(run, rb, sid, step, text, err, step.on_error)
                rec["outcome"] = "error"
                rec["kind"] = "preview"
                return self._commit_and_arrive(run, rb, rec, nxt, actor, "preview")
            fields = self._result_fields(text, res, state["params"])
            rec = self._record(run, sid, step, outcome="preview", **fields)
            rec["kind"] = "preview"
            rec["summary"] = f"would affect {res.row_count} row{'s' if res.row_count != 1 else ''}"
            state.update(seq=rec["seq"], current=sid, waiting="confirm",
                         pending={"columns": res.columns, "rows": res.rows[: self.max_rows], "row_count": res.row_count})
            run["version"] = self.store.commit_step(run["id"], run["version"], "active", state, rec, actor,
                                                    "preview", {"step": sid, "rows": res.row_count})
        else:
            waiting = "answer" if isinstance(step, QuestionStep) else "run"
            state.update(current=sid, waiting=waiting)
            if state != run["state"]:
                run["version"] = self.store.commit_step(run["id"], run["version"], "active", state, None, actor,
                                                        "arrive", {"step": sid})
            rec = None
        run["state"] = state
        if rec is not None:
            run["steps"].append(rec)
        return run

    def _stop(self, run, actor, reason) -> dict:
        state = dict(run["state"], waiting=None, failure={"condition": "step_limit", "message": reason})
        state.pop("claim", None)
        run["version"] = self.store.commit_step(run["id"], run["version"], "stopped", state, None, actor, "stop",
                                                {"reason": reason})
        run["status"] = "stopped"
        run["state"] = state
        return run


def _duration(seconds: float) -> str:
    """1 d 2 h, 3 h 5 min, 4 min, 20 s."""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400} d" + (f" {s % 86400 // 3600} h" if s % 86400 >= 3600 else "")
    if s >= 3600:
        return f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 >= 60 else "")
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


def _is_connect_error(exc) -> bool:
    """A failure to connect (psycopg gives it no SQLSTATE) rather than a query failure."""
    import psycopg

    from kb.runbooks.executor import Busy, NoReservedConnection

    if isinstance(exc, (Busy, NoReservedConnection)):
        return True
    return isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None


def _link_label(entry, section: str | None, title: str) -> str:
    """'<fix step or section title> (<entry title>)', or the entry title alone."""
    if entry is None or not section:
        return title
    for sec in entry.sections.values():
        if sec.key == section:
            return f"{sec.title} ({title})"
        for item in sec.items:
            if item.id == section:
                return f"{item.title} ({title})"
    return title
