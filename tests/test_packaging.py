"""The install ships every package and the migrations (a source checkout hides a missing one)."""

import configparser
from pathlib import Path

from tests.harness import REPO


def test_every_package_is_listed_in_setup_cfg() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "appliance").rglob("__init__.py")}
    assert found <= listed, f"missing from setup.cfg [options] packages: {sorted(found - listed)}"
    assert "appliance._migrations" in listed
    assert config["options"]["package_dir"].split() == ["appliance._migrations", "=", "migrations"]


def test_migrations_are_package_data() -> None:
    assert Path(REPO / "migrations" / "__init__.py").is_file()
    assert sorted(p.name for p in (REPO / "migrations").glob("*.sql"))[0].startswith("0001_")
