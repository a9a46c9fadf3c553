"""Run ascend_ops.vllm.npu_facts through ansible against a fake npu-smi that prints a fixture."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "npu_smi"


def fake_npu_smi(tmp_path: Path, fixture: str, rc: int = 0, stderr: str = "") -> str:
    """Executable that prints the fixture for 'info' and fails for anything else."""
    script = tmp_path / "npu-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = info ] || {{ echo "npu-smi: unknown command $1" >&2; exit 2; }}\n'
        f"cat '{FIXTURES / fixture}'\n"
        + (f"echo '{stderr}' >&2\n" if stderr else "")
        + f"exit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize("fixture, layout, npu_count, chip_count, last_chip, processes", [
    ("info_a2_910b3_full.txt", "a2", 8, 8,
     {"logical_id": 7, "npu_id": 7, "chip_id": 0, "phy_id": None, "bus_id": "0000:42:00.0", "power_w": 104.1}, 0),
    ("info_a3_full.txt", "a3", 8, 16,
     {"logical_id": 15, "npu_id": 7, "chip_id": 1, "phy_id": 15, "bus_id": "0000:47:00.0", "power_w": None}, 0),
    ("info_a2_processes.txt", "a2", 8, 8,
     {"logical_id": 7, "npu_id": 7, "hbm_used_mb": 61070, "aicore_pct": 42}, 9),
])
def test_reports_devices(run_module, tmp_path, fixture, layout, npu_count, chip_count, last_chip, processes, check):
    result = run_module("npu_facts", {"npu_smi_path": fake_npu_smi(tmp_path, fixture)}, check=check)
    assert result["_status"] == "SUCCESS" and result["changed"] is False
    assert (result["layout"], result["npu_count"], result["chip_count"]) == (layout, npu_count, chip_count)
    assert len(result["chips"]) == chip_count
    assert {k: result["chips"][-1][k] for k in last_chip} == last_chip
    assert len(result["processes"]) == processes


def test_unhealthy_chips_are_reported(run_module, tmp_path):
    result = run_module("npu_facts", {"npu_smi_path": fake_npu_smi(tmp_path, "info_a2_unhealthy.txt")})
    unhealthy = [(c["npu_id"], c["health"]) for c in result["chips"] if c["health"] != "OK"]
    assert unhealthy == [(3, "Warning"), (6, "Alarm")]


@pytest.mark.parametrize("check", [False, True])
def test_parse_error_names_command_and_line(run_module, tmp_path, check):
    tool = fake_npu_smi(tmp_path, "info_bad_truncated.txt")
    result = run_module("npu_facts", {"npu_smi_path": tool}, check=check)
    assert result["_status"] == "FAILED"
    assert f"'{tool} info' (rc=0)" in result["msg"]
    assert "chip row without its second line at line 10: '| 1     910B3" in result["msg"]


def test_tool_failure_names_rc_and_stderr(run_module, tmp_path):
    tool = fake_npu_smi(tmp_path, "info_bad_dcmi_error.txt", rc=8, stderr="dcmi init failed")
    result = run_module("npu_facts", {"npu_smi_path": tool})
    assert result["_status"] == "FAILED"
    assert result["msg"] == f"'{tool} info' failed with rc=8: dcmi init failed"


def test_missing_tool(run_module, tmp_path):
    result = run_module("npu_facts", {"npu_smi_path": str(tmp_path / "absent")})
    assert result["_status"] == "FAILED"
    assert f"not executable at {tmp_path / 'absent'}" in result["msg"] and "npu_smi_path" in result["msg"]
