#!/usr/bin/env python
"""Boot time and idle memory of the simulated 1P1D cluster (7 machines), cold and warm.

Cold = base image and simulator layer removed (`simctl down --purge`) and rebuilt;
warm = both cached. Needs root. Tears the cluster down at the end.
Usage: .venv/bin/python benchmarks/sim_cluster.py [-i inventories/sim_1p1d/hosts.yml]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIMCTL = REPO / "sim" / "simctl"
TARGETS = {"cold": 120.0, "warm": 30.0}
MIB_TARGET = 30.0


def simctl(*args: str) -> str:
    res = subprocess.run([sys.executable, str(SIMCTL), *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"simctl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


def boot(inventory: str, label: str) -> tuple[float, float]:
    """One `simctl up`; returns (wall seconds, MiB per idle machine) and prints its phases."""
    start = time.monotonic()
    out = simctl("up", "-i", inventory, "--settle", "5")
    wall = time.monotonic() - start
    total = float(re.search(r"machines in ([\d.]+)s total", out).group(1))
    mib = float(re.search(r"memory per idle machine: ([\d.]+) MiB", out).group(1))
    for line in out.splitlines():
        if "phase" in line:
            print(f"  {label}: {line.removeprefix('simctl: ')}")
    ok = "ok" if total < TARGETS[label] else f"OVER target {TARGETS[label]:.0f}s"
    print(f"{label}: up {total:.1f}s (simctl total; {wall:.1f}s wall incl. 5s idle settle) [{ok}]")
    return total, mib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default=str(REPO / "inventories" / "sim_1p1d" / "hosts.yml"))
    args = parser.parse_args()
    try:
        simctl("down", "--purge")
        cold, _cold_mib = boot(args.inventory, "cold")
        simctl("down")
        warm, mib = boot(args.inventory, "warm")
    finally:
        simctl("down")
    ok = "ok" if mib < MIB_TARGET else f"OVER target {MIB_TARGET:.0f} MiB"
    print(f"summary: cold {cold:.1f}s, warm {warm:.1f}s, {mib:.1f} MiB per idle machine [{ok}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
