"""roles/host_tuning/files/host_tuning.py on a fake /proc/sys and /sys: drift, apply, idempotence, skipped knobs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "host_tuning" / "files" / "host_tuning.py"


def load():
    spec = importlib.util.spec_from_file_location("host_tuning_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture
def tree(tmp_path):
    """Two CPUs on powersave, THP madvise, swappiness 60, numa_balancing 1, the migration sysctl at 500000."""
    for cpu in (0, 1):
        gov = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        gov.parent.mkdir(parents=True)
        gov.write_text("powersave\n")
    thp = tmp_path / "sys/kernel/mm/transparent_hugepage/enabled"
    thp.parent.mkdir(parents=True)
    thp.write_text("always [madvise] never\n")
    for key, value in {"vm/swappiness": "60", "kernel/numa_balancing": "1", "kernel/sched_migration_cost_ns": "500000"}.items():
        path = tmp_path / "proc/sys" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    wanted = {"host": "h1", "governor": "performance", "thp": "always", "migration_cost_ns": 50000,
              "sysctl": {"vm.swappiness": 0, "kernel.numa_balancing": 0},
              "paths": {"sysctl_root": str(tmp_path / "proc/sys"),
                        "governor_glob": str(tmp_path / "sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"),
                        "thp": str(thp), "migration_sysctl": str(tmp_path / "proc/sys/kernel/sched_migration_cost_ns"),
                        "migration_debugfs": str(tmp_path / "sys/kernel/debug/sched/migration_cost_ns")}}
    return tmp_path, wanted


def run(mode: str, wanted: dict) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), mode, json.dumps(wanted)], capture_output=True, text=True,
                          check=True, timeout=30)
    return json.loads(proc.stdout)


def test_probe_reports_drift_and_changes_nothing(tree):
    root, wanted = tree
    got = run("probe", wanted)
    assert got["drift"] == [
        "cpu governor: seen powersave, want performance",
        "transparent hugepages: seen always [madvise] never, want always",
        "sysctl vm.swappiness: seen 60, want 0",
        "sysctl kernel.numa_balancing: seen 1, want 0",
        "sched migration cost: seen 500000, want 50000",
    ]
    assert got["skipped"] == [] and got["migration_via"] == "sysctl"
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"


def test_apply_converges_then_changes_nothing(tree):
    root, wanted = tree
    first = run("apply", wanted)
    assert len(first["changed"]) == 6 and first["drift"] == [] and first["skipped"] == []
    assert (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor").read_text() == "performance"
    # The kernel shows the chosen THP mode in brackets.
    (root / "sys/kernel/mm/transparent_hugepage/enabled").write_text("[always] madvise never\n")
    second = run("apply", wanted)
    assert second["changed"] == [] and second["drift"] == []


def test_absent_knobs_are_skipped_with_the_reason(tree):
    root, wanted = tree
    (root / "proc/sys/kernel/sched_migration_cost_ns").unlink()
    (root / "proc/sys/kernel/numa_balancing").unlink()
    got = run("probe", wanted)
    assert "sysctl kernel.numa_balancing: not tuned, this kernel has no such sysctl" in got["skipped"]
    assert any(line.startswith("sched migration cost: not tuned, neither") and "mount debugfs" in line
               for line in got["skipped"])
    assert got["migration_via"] is None


def test_read_only_knobs_are_skipped_not_written(tree, monkeypatch):
    """A container's read-only /proc/sys: reported with seen, want, path and fix; apply leaves it alone."""
    root, wanted = tree
    module = load()
    ro = str(root / "proc/sys/vm/swappiness")
    monkeypatch.setattr(module, "not_writable", lambda path: "EROFS: read-only file system" if path == ro else None)
    got = module.apply(wanted, "sim-d0")
    assert (root / "proc/sys/vm/swappiness").read_text() == "60\n"
    line = next(line for line in got["skipped"] if line.startswith("sysctl vm.swappiness"))
    assert "seen 60, want 0" in line and ro in line and "EROFS" in line and "sim-d0" in line
    assert not any(line.startswith("sysctl vm.swappiness") for line in got["drift"] + got["changed"])
    assert got["drift"] == [] and len(got["changed"]) == 5
    again = module.apply(wanted, "sim-d0")
    assert again["changed"] == [] and len(again["skipped"]) == 1


def test_a_refused_write_is_skipped(tree, monkeypatch):
    """Looks writable, but the kernel says no (EPERM in a user namespace): skipped, not changed, not fatal."""
    root, wanted = tree
    module = load()
    refused = str(root / "proc/sys/kernel/numa_balancing")
    real_write = module.write
    monkeypatch.setattr(module, "write", lambda path, value: "EPERM: Operation not permitted"
                        if path == refused else real_write(path, value))
    got = module.apply(wanted, "h1")
    assert any(line.startswith("sysctl kernel.numa_balancing: writing 0") and "EPERM" in line for line in got["skipped"])
    assert not any(line.startswith("sysctl kernel.numa_balancing") for line in got["drift"])
    assert all("numa_balancing" not in line for line in got["changed"])
