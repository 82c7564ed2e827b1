"""Targets from configuration and environment; secrets never leave them."""

from __future__ import annotations

import pytest

from kb.errors import ConfigError
from kb.settings import load_config
from kb.runbooks.targets import load_targets, redact


def cfg(env=None, **over):
    return load_config({"config": None, **over}, environ=env or {})


def test_database_url_becomes_default():
    c = cfg({"DATABASE_URL": "postgresql://u:pw@db/app"})
    t = load_targets(c, environ={})
    assert list(t) == ["default"] and t["default"].dsn == "postgresql://u:pw@db/app"
    assert "pw" not in str(t["default"].public()) and "dsn" not in t["default"].public()


def test_pg_variables_become_default_when_no_url():
    t = load_targets(cfg(), environ={"PGHOST": "db", "PGUSER": "x"})
    assert t["default"].dsn == "" and t["default"].description == "libpq PG* environment"
    assert load_targets(cfg(), environ={}) == {}


def test_toml_targets_and_their_checks():
    t = load_targets(cfg(targets={"prod": {"dsn": "host=db", "kind": "pgbouncer", "cap": 2, "roles": ["admin"]}}), environ={})
    assert (t["prod"].kind, t["prod"].cap, t["prod"].roles) == ("pgbouncer", 2, ("admin",))
    for bad, msg in [({"x y": {"dsn": "d"}}, "a target name is"), ({"p": {}}, "needs a `dsn`"),
                     ({"p": {"dsn": "d", "colour": 1}}, "unknown key(s) colour"), ({"p": {"dsn": "d", "cap": 50}}, "between 1 and 10"),
                     ({"p": {"dsn": "d", "kind": "mysql"}}, "postgresql or pgbouncer")]:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            load_targets(cfg(targets=bad), environ={})


@pytest.mark.parametrize("text,secret", [
    ("failed for postgresql://kb:hunter2@db:5432/app", "hunter2"),
    ("conninfo host=db password=hunter2 user=kb", "hunter2"),
])
def test_redact(text, secret):
    assert secret not in redact(text, [])


def test_environment_wins_over_the_file(tmp_path):
    (tmp_path / "kb.toml").write_text('port = 9000\nstatement_timeout_ms = 100\n[targets.a]\ndsn = "host=x"\n')
    c = load_config({"config": str(tmp_path / "kb.toml")}, environ={"KB_PORT": "9100"})
    assert c.port == 9100 and c.statement_timeout_ms == 100 and "a" in c.targets
    (tmp_path / "bad.toml").write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'nonsense'"):
        load_config({"config": str(tmp_path / "bad.toml")}, environ={})


@pytest.mark.parametrize("dsn", [
    "postgresql://kb:Zq7@Xy8 Wv9@127.0.0.1:5432/app",    # an unencoded '@' and a space in a URL password
    "postgresql://kb:Zq7@Xy8Wv9@127.0.0.1:5432/app",     # an unencoded '@': libpq reads host "Xy8Wv9@127.0.0.1"
    "postgresql://kb:Zq7/Xy8Wv9@127.0.0.1:5432/app",     # an unencoded '/': libpq reads port "Zq7"
    "host=127.0.0.1 user=kb password=Zq7 Xy8Wv9",        # an unquoted space in a key=value password
    "host=127.0.0.1 user=kb password=Zq7 Xy8Wv9=x",
])
def test_a_misformatted_dsn_is_refused_without_repeating_it(dsn):
    for over in ({"targets": {"prod": {"dsn": dsn}}}, {"targets": {"prod": {"dsn": "host=db", "reserved_dsn": dsn}}}):
        with pytest.raises(ConfigError) as err:
            load_targets(cfg(**over), environ={})
        assert "targets.prod." in str(err.value) and "percent-encode" in str(err.value)
        assert not any(frag in str(err.value) for frag in ("Zq7", "Xy8", "Wv9"))
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_targets(cfg({"DATABASE_URL": dsn}), environ={})


def test_well_formed_passwords_with_odd_characters_are_accepted_and_scrubbed():
    t = load_targets(cfg(targets={
        "a": {"dsn": "postgresql://kb:p%40ss%20w0rd@127.0.0.1:5432/app"},
        "b": {"dsn": "host=/var/run/postgresql user=kb password='s3cret value'"},
    }), environ={})
    assert "p@ss w0rd" in t["a"].secrets() and "s3cret value" in t["b"].secrets()
    assert "s3cret" not in redact("conninfo host=db password='s3cret value' user=kb", [])
    assert "w0rd" not in redact("for postgresql://kb:p@ssw0rd@db/app", [])
