"""docs/version-rules.md is generated from the version data; --check fails on a stale page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "version_rules_doc.py"


def test_docs_page_is_current():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_page_names_every_setting_and_family():
    data = yaml.safe_load((REPO / "roles/vllm/defaults/main/versions.yml").read_text())["vllm_ascend_versions"]
    page = (REPO / "docs" / "version-rules.md").read_text()
    for setting in data["settings"].values():
        assert f"`{setting['env']}`" in page and f"`{setting['key']}`" in page
    for family in data["families"]:
        assert f"| {family} |" in page


def test_check_detects_a_stale_page(tmp_path):
    """Run the script on a copy whose page was edited by hand."""
    for rel in ("scripts/version_rules_doc.py", "roles/vllm/defaults/main/versions.yml", "docs/version-rules.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((REPO / rel).read_text())
    page = tmp_path / "docs" / "version-rules.md"
    page.write_text(page.read_text().replace("removed", "gone"))
    script = tmp_path / "scripts" / "version_rules_doc.py"
    assert subprocess.run([sys.executable, str(script), "--check"], capture_output=True, check=False).returncode == 1
    assert subprocess.run([sys.executable, str(script)], capture_output=True, check=False).returncode == 0
    assert subprocess.run([sys.executable, str(script), "--check"], capture_output=True, check=False).returncode == 0
