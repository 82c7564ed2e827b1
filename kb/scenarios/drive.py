"""Drive a scenario's run to its end through the run service, answering as the scenario says."""

from __future__ import annotations


def step_path(run: dict) -> list[str]:
    """Step ids of a run in order, consecutive repeats (preview then action) collapsed."""
    path: list[str] = []
    for s in run["steps"]:
        if not path or path[-1] != s["step_id"]:
            path.append(s["step_id"])
    return path


def drive(runs, sc, target: str, ident, max_steps: int = 60, decline: bool = False) -> dict:
    """Start and advance a run of `sc.runbook` on `target` until it is no longer active; with
    `decline`, every action is declined whatever the scenario confirms."""
    run = runs.start(sc.runbook, target, sc.params, ident, auto=True)
    for _ in range(max_steps):
        cur = run["current"]
        if run["status"] != "active" or cur is None:
            return run
        if cur["kind"] == "question":
            run = runs.advance(run["id"], ident, answer=sc.answers[cur["id"]], auto=True)
        elif cur["kind"] == "action":
            run = runs.advance(run["id"], ident, confirm=not decline and sc.confirm.get(cur["id"], False),
                                auto=True)
        else:
            run = runs.advance(run["id"], ident, auto=True)
    return run
