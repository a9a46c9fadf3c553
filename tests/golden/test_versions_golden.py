"""Golden renders of one PD layout (the seed's a3_1p1d_w8a8) under each supported vllm-ascend version.

tests/golden/versions/a3_1p1d_w8a8.<version>.json holds every launch's env and argv as
render.yml writes them for that version (reviewed by hand when the version data changes;
regenerate with UPDATE_VERSION_GOLDEN=1). The seed's own version is covered byte for byte
by test_seed_golden.py; here it must also equal the render without naming a version.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("versions")
VERSIONS = ("v0.20.2rc1", "v0.23.0", "main")


def render(tmp_path: Path, version: str | None) -> dict:
    extra = ["-e", f"vllm_ascend_version={version}"] if version else []
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/render.yml",
         "-i", "inventories/a3_1p1d_w8a8/hosts.yml", "-e", f"render_dir={tmp_path}", *extra],
        cwd=REPO, env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return json.loads((tmp_path / "plan.json").read_text())


def launches(plan: dict) -> dict:
    return {host: [{"name": la["name"], "env": la["env"], "argv": la["argv"]} for la in h["launches"]]
            for host, h in plan["hosts"].items()}


@pytest.mark.parametrize("version", VERSIONS)
def test_pd_render_per_version(version, tmp_path):
    plan = render(tmp_path, version)
    got = launches(plan)
    golden = GOLDEN / f"a3_1p1d_w8a8.{version}.json"
    if os.environ.get("UPDATE_VERSION_GOLDEN"):
        golden.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(golden.read_text())
    assert plan["version"]["name"] == version
    # the launch scripts on disk exec exactly that argv
    for host, items in got.items():
        for launch in items:
            last = (tmp_path / host / f"{launch['name']}.sh").read_text().strip().splitlines()[-1]
            assert shlex.split(last) == ["exec"] + launch["argv"]


def test_default_version_is_the_seed(tmp_path):
    assert launches(render(tmp_path, None)) == json.loads((GOLDEN / "a3_1p1d_w8a8.v0.20.2rc1.json").read_text())
