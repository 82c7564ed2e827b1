"""What a slash command or a button press does to a run, on the worker, after its request was answered.

Each function advances a run through the run service as the chat user who asked (so roles, targets
and the audit trail are the API's) and posts the run's message to the request's `response_url`: a new
message in the channel when a run starts, the same message replaced in place when a button of it is
pressed. The run store's claim makes every step run once: a press that lost the race to another
press, worker or host gets 409 from the engine, is told so privately, and the message is re-posted as
the store has it.
"""

from __future__ import annotations

import logging

from kb.chat.blocks import choose_target, notice, run_message
from kb.chat.worker import Poster
from kb.errors import ApiError, RunStateError
from kb.runbooks.transcript import slack_text

log = logging.getLogger("kb")


def tell(poster: Poster, text: str) -> None:
    """A notice to the person who pressed or typed, leaving the run's message as it is."""
    poster.post(notice(text, replace_original=False))


def continue_run(svc, ident, run_id: str, poster: Poster, base: str, **fields) -> None:
    """Run a new run's diagnostics up to its first question, action or conclusion; post its message."""
    try:
        run = svc.runs.get(run_id, ident)
        cur = run["current"]
        if run["status"] == "active" and cur and cur["waiting_for"] == "run":
            try:
                run = svc.runs.advance(run_id, ident, auto=True, step=cur["id"])
            except RunStateError:  # another worker or host holds the step: show what the store has
                run = svc.runs.get(run_id, ident)
    except ApiError as exc:
        tell(poster, f"Run {slack_text(run_id)}: {slack_text(exc.error)}")
        return
    except Exception:
        tell(poster, f"Run {slack_text(run_id)} failed inside kb; its page shows how far it got: "
                         f"{base}/runs/{slack_text(run_id)}")
        raise
    fields.setdefault("response_type", "in_channel")
    fields.setdefault("replace_original", False)
    poster.post(run_message(run, base, **fields))


def start(svc, ident, runbook: str, target: str, poster: Poster, base: str) -> None:
    """Start `runbook` on `target` (chosen by a button) and post the run's message in the channel."""
    try:
        run = svc.runs.start(runbook, target, {}, ident, auto=False)
    except ApiError as exc:
        tell(poster, f"Could not start: {slack_text(exc.error)}")
        return
    continue_run(svc, ident, run["id"], poster, base)


def offer_targets(svc, ident, runbook: str, poster: Poster, base: str) -> None:
    """The Run button of a search reply: start on the asker's only target, or ask which one."""
    rb = svc.catalog.runbooks.get(runbook)
    if rb is None:
        tell(poster, f"Runbook {slack_text(runbook)} is not deployed.")
        return
    targets = svc.runs.targets_for(ident, rb.target_kind)["targets"]
    if not targets:
        tell(poster, f"There is no {slack_text(rb.target_kind)} target you may run *{slack_text(rb.title)}* on.")
    elif len(targets) > 1:
        poster.post(choose_target(rb, targets))
    else:
        start(svc, ident, runbook, targets[0]["name"], poster, base)


def press(svc, ident, who: str, kind: str, value: dict, poster: Poster, base: str) -> None:
    """Answer a question, confirm or skip an action, as the chat user who pressed the button; the run's
    message is replaced in place, first with what is being done and then with where the run is."""
    run_id, step, seen = str(value.get("r", "")), value.get("s"), value.get("n")
    try:
        run = svc.runs.get(run_id, ident)
    except ApiError as exc:
        tell(poster, slack_text(exc.error))
        return
    cur = run["current"]
    if run["status"] != "active" or not cur or cur["id"] != step or len(run["steps"]) != seen:
        tell(poster, f"That button belongs to an earlier state of run {slack_text(run_id)}, which has moved "
                         f"on: {slack_text(run['summary'])}")
        return
    if not ident.can("operator"):
        tell(poster, f"{who} has the {ident.role} role; answering a run needs operator.")
        return
    answer = confirm = None
    if kind == "answer":
        answer = str(value.get("a", ""))
        label = next((a["label"] for a in cur.get("answers") or [] if a["value"] == answer), answer)
        working = f"{who} answered “{slack_text(label)}”; running the next steps…"
    elif kind == "confirm":
        confirm = True
        working = f"{who} confirmed *{slack_text(cur['title'])}*; running it once, then looking again…"
    else:
        confirm = False
        working = f"{who} skipped *{slack_text(cur['title'])}*; nothing is changed…"
    if confirm and not ident.can("admin"):
        try:  # refused by the run service, which records the refusal in the audit trail
            svc.runs.advance(run_id, ident, confirm=True, step=step)
        except ApiError as exc:
            tell(poster, f"{who} may not confirm this: {slack_text(exc.error)}. Ask a chat user mapped to "
                             "the admin role.")
        return
    poster.post(run_message(run, base, working=working, replace_original=True))
    try:
        run = svc.runs.advance(run_id, ident, answer=answer, confirm=confirm, auto=True, step=step)
    except ApiError as exc:
        tell(poster, f"Not done: {slack_text(exc.error)}")
        try:
            run = svc.runs.get(run_id, ident)
        except ApiError:
            return
        if run["status"] == "active" and (run["current"] or {}).get("id") == step and len(run["steps"]) == seen:
            # another press holds the step right now: its own post will show where the run got to, and
            # arrives after ours did (ours was sent before this press even tried the step)
            return
    except Exception:
        tell(poster, f"Run {slack_text(run_id)} failed inside kb; its page shows how far it got.")
        raise
    poster.post(run_message(run, base, replace_original=True))
