#!/usr/bin/env python
"""Benchmark (not a test): wall time of deploy_1p1d.yml on the simulated cluster.

Brings the sim_1p1d machines up if needed, tears any deployment down, then times
a cold deploy and an idempotent re-run, and prints both, their ratio and the
number of changed tasks of the re-run (from the play recap). Run as root from
the repository root:  .venv/bin/python benchmarks/deploy_1p1d.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INVENTORY = "inventories/sim_1p1d/hosts.yml"


def playbook(name: str) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", INVENTORY],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def changed(recap: str) -> int:
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", recap.split("PLAY RECAP", 1)[-1]))


def main() -> None:
    subprocess.run([str(BIN / "python"), "sim/simctl", "up", "-i", INVENTORY], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    playbook("teardown.yml")
    cold, out_cold = playbook("deploy_1p1d.yml")
    warm, out_warm = playbook("deploy_1p1d.yml")
    print(f"deploy_1p1d.yml cold:          {cold:7.1f} s  ({changed(out_cold)} changed tasks)")
    print(f"deploy_1p1d.yml idempotent:    {warm:7.1f} s  ({changed(out_warm)} changed tasks)")
    print(f"ratio idempotent / cold:       {warm / cold:7.2f}")


if __name__ == "__main__":
    main()
