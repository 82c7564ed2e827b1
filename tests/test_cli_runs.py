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


def test_the_local_operator_is_told_how_to_confirm(app_factory, runbooks_dir, pg):
    """A loopback server without identities: the page and the API say how to become an admin."""
    app = app_factory(runbooks_dir=str(runbooks_dir), targets={"t": {"dsn": pg.dsn("monitor")}})
    c = app.test_client()
    r = c.post("/api/v1/runs", json={"runbook": "probe-action", "target": "t", "auto": True})
    assert r.status_code == 201, r.get_json()
    rid = r.get_json()["id"]
    page = c.get(f"/runs/{rid}").get_data(as_text=True)
    assert ("To confirm, create an admin token in a terminal with <code>kb token create NAME --role admin</code>, then\n"
            f'    <a href="/login?next=/runs/{rid}">sign in</a> with it. Once a token exists, browsers that have not '
            "signed in can only read.") in page
    r = c.post(f"/api/v1/runs/{rid}/advance", json={"confirm": True})
    assert r.status_code == 403
    assert r.get_json()["error"] == (
        "local has the operator role; confirming an action needs admin: create an admin token in a terminal with "
        "`kb token create NAME --role admin`, then sign in at /login with it (once a token exists, browsers that "
        "have not signed in can only read)")


def test_the_first_token_says_the_local_operator_ends(kb_env, tmp_path, app_factory, runbooks_dir, caplog):
    """Creating the first token turns unsigned-in local browsers into readers: the CLI and the server log say so."""
    import logging

    app = app_factory(runbooks_dir=str(runbooks_dir))
    state = app.extensions["kb_access"]
    assert state.configured() is False
    runner = CliRunner()
    env = dict(kb_env, KB_INSTANCE_DIR=str(tmp_path / "instance"))
    first = runner.invoke(cli, ["token", "create", "alice", "--role", "admin"], env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("kb_") and len(first.stdout.split()) == 1  # the token alone, for scripts
    assert first.stderr == ("This is the first token: a kb server on a loopback address no longer treats browsers "
                            "that have not signed in as the local operator. They can now only read; sign in at /login "
                            "with a token to start runs or confirm actions.\n")
    second = runner.invoke(cli, ["token", "create", "bob"], env=env)
    assert second.exit_code == 0 and second.stderr == ""
    state._tokens_cached = (0.0, False)  # as if its cache of two seconds ran out
    with caplog.at_level(logging.WARNING, logger="kb"):
        assert app.test_client().post("/api/v1/runs", json={"runbook": "probe-action", "target": "t"}).status_code == 401
    assert ("a token was created: browsers that have not signed in are no longer the local operator; they can only "
            "read (KB_ANONYMOUS_ROLE) until they sign in at /login") in caplog.messages


@pytest.mark.parametrize("existing,expected", [
    (None, ["Point kb at it (this creates {p}; nothing in it is overwritten):\n",
            "  cat >> {p} <<'EOF'", "  [targets.sandbox]", '  dsn = "postgresql://x"', "  EOF"]),
    ('[targets.prod]\ndsn = "postgresql://prod"\n',
     ["Point kb at it (this adds a target to {p}; nothing in it is overwritten):\n",
      "  cat >> {p} <<'EOF'", "", "  [targets.sandbox]", '  dsn = "postgresql://x"', "  EOF"]),
    ('[targets.sandbox]\ndsn = "postgresql://old"\n',
     ["{p} has a [targets.sandbox] table already: set its lines to these (appending a second one would make the "
      "file invalid):\n", "  [targets.sandbox]", '  dsn = "postgresql://x"']),
])
def test_sandbox_hint_never_overwrites_the_config(tmp_path, existing, expected):
    from kb.cli.runs import sandbox_hint

    path = tmp_path / "kb.toml"
    if existing is not None:
        path.write_text(existing)
    assert sandbox_hint(path, {"dsn": "postgresql://x"}) == [line.replace("{p}", str(path)) for line in expected]
