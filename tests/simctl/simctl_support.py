"""Fixtures for sim/simctl: a 2-machine simulated cluster, torn down at the end."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SIMCTL = REPO / "sim" / "simctl"
KEY = Path("/var/lib/ascend-sim/ssh/id_ed25519")
STATE_FILE = Path("/run/ascend-sim/state.json")
MACHINES = {"sim-a": "10.250.0.41", "sim-b": "10.250.0.42"}
NPUS = 2
INVENTORY = """\
all:
  children:
    sim:
      hosts:
        sim-a: {ansible_host: 10.250.0.41}
        sim-b: {ansible_host: 10.250.0.42}
"""
GROUP_VARS = "sim_machine: true\nsim_hardware: a3\nsim_npu_count: 2\n"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim: needs root; boots systemd-nspawn machines with sim/simctl")


def simctl(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run simctl with the venv python; check=True fails the test with its output."""
    res = subprocess.run([sys.executable, str(SIMCTL), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        pytest.fail(f"simctl {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def ssh(address: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o",
                           "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                           f"root@{address}", command], capture_output=True, text=True, timeout=timeout, check=False)


def write_inventory(directory: Path) -> Path:
    (directory / "group_vars").mkdir(parents=True)
    (directory / "group_vars" / "sim.yml").write_text(GROUP_VARS)
    hosts = directory / "hosts.yml"
    hosts.write_text(INVENTORY)
    return hosts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.CompletedProcess]:
    """Two A3 machines with 2 NPUs each; `simctl down` afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("simctl needs root")
    if STATE_FILE.exists():
        pytest.skip(f"a simulated cluster is already up ({STATE_FILE}); not replacing someone else's machines")
    inventory = write_inventory(tmp_path_factory.mktemp("inventory"))
    try:
        yield simctl("up", "-i", str(inventory))
    finally:
        simctl("down", check=False)
