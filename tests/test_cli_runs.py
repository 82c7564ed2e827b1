"""`kb run`, `kb token` and `kb sandbox` as a new user meets them: roles checked before asking,
runs left part-way listed as abandoned, and hints that never overwrite a file."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from kb.cli import cli
from kb.service import Service
from kb.web.auth import Identity

ADMIN = Identity("root", "admin", "token")


@pytest.fixture
def kb_env(tmp_path, runbooks_dir, index_dir, pg):
    """Environment for the CLI: a kb.toml with target `t`, the probe runbooks, a private instance folder."""
    toml = tmp_path / "kb.toml"
    toml.write_text(f'runbooks_dir = "{runbooks_dir}"\ninstance_dir = "{tmp_path / "instance"}"\n'
                    f'index_dir = "{index_dir}"\ntarget_idle_seconds = 0.0\n\n'
                    f'[targets.t]\ndsn = "{pg.dsn("monitor")}"\n')
    return {"KB_CONFIG": str(toml), "DATABASE_URL": "", "KB_STORE_URL": ""}


def runs(config_factory, runbooks_dir, tmp_path, **kw) -> list[dict]:
    svc = Service.from_config(config_factory(runbooks_dir=str(runbooks_dir), instance_dir=str(tmp_path / "instance"), **kw))
    try:
        return svc.runs.recent(ADMIN)["runs"]
    finally:
        svc.runs.close()


def test_run_without_admin_says_so_before_asking(kb_env):
    """An operator is told an action needs --as-admin instead of being asked to type yes for nothing."""
    res = CliRunner().invoke(cli, ["run", "probe-action", "--target", "t"], env=kb_env, input="")
    assert res.exit_code == 0, res.output
    assert "Type yes" not in res.output
    assert ("Running an action needs the admin role: rerun with --as-admin to be able to run it. "
            "Skipping it; nothing is changed.") in res.output
    assert "Concluded (healthy): Not touched." in res.output


def test_run_as_admin_asks_and_runs(kb_env):
    res = CliRunner().invoke(cli, ["run", "probe-action", "--target", "t", "--as-admin"], env=kb_env, input="yes\n")
    assert res.exit_code == 0, res.output
    assert "Type yes to run it" in res.output and "done: updated 1 row" in res.output
    assert "Concluded (healthy): Touched." in res.output


def test_a_run_left_at_a_prompt_is_abandoned_at_once(kb_env, config_factory, runbooks_dir, tmp_path):
    """Leaving `kb run` at its prompt (end of input, Ctrl-C) ends the run as abandoned, so /runs does
    not show it active for a day."""
    res = CliRunner().invoke(cli, ["run", "probe-action", "--target", "t", "--as-admin"], env=kb_env, input="")
    assert res.exit_code == 1 and "Aborted!" in res.output
    (listed,) = runs(config_factory, runbooks_dir, tmp_path)
    assert (listed["status"], listed["outcome"]) == ("abandoned", "inconclusive")
    assert f"run {listed['id']} abandoned" in res.output
    svc = Service.from_config(config_factory(runbooks_dir=str(runbooks_dir), instance_dir=str(tmp_path / "instance")))
    try:
        seen = svc.runs.get(listed["id"], ADMIN)
        assert seen["summary"] == ("Abandoned: left unanswered in the terminal at step 'act'; start a new run to "
                                   "look again")
        assert [e["event"] for e in svc.runs.audit(listed["id"], ADMIN)][-1] == "abandon"
    finally:
        svc.runs.close()


def test_a_stale_run_of_a_runbook_no_longer_deployed_is_listed_abandoned(config_factory, runbooks_dir, tmp_path, pg):
    """The idle rule applies when listing even when the run cannot be opened any more."""
    import time

    targets = {"t": {"dsn": pg.dsn("monitor")}}
    svc = Service.from_config(config_factory(runbooks_dir=str(runbooks_dir), targets=targets, abandon_after=1.0))
    try:
        run = svc.runs.start("probe-action", "t", {}, ADMIN, auto=True)
        assert run["status"] == "active"
    finally:
        svc.runs.close()
    fewer = tmp_path / "fewer"
    shutil.copytree(runbooks_dir, fewer)
    (fewer / "probe-action.yaml").unlink()
    time.sleep(1.3)
    (listed,) = runs(config_factory, fewer, tmp_path, targets=targets, abandon_after=1.0)
    assert (listed["id"], listed["status"], listed["outcome"]) == (run["id"], "abandoned", "inconclusive")
