"""The README documents every setting and both commands."""

from pathlib import Path

from kb.settings import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in README]
    assert not missing, f"README lacks: {missing}"


def test_two_commands():
    assert "pip install -e . && kb serve" in README
    assert "pip install -e '.[test]' && pytest" in README
