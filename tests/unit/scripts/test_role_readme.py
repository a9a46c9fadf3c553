"""Every role README's variable table is generated from its meta/argument_specs.yml and up to date,
and every public default of a role is in its argument spec."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def test_role_readmes_are_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "role_readme.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_every_default_has_a_spec(role):
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = {}
    files = sorted((role / "defaults" / "main").glob("*.yml")) if (role / "defaults" / "main").is_dir() \
        else [role / "defaults" / "main.yml"]
    for path in files:
        if path.exists():
            defaults.update(yaml.safe_load(path.read_text()) or {})
    assert sorted(set(defaults) - set(spec)) == []
