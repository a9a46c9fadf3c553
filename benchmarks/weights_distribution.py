#!/usr/bin/env python
"""Weights distribution on 5 simulated machines: the doubling tree (storage local) vs every machine
downloading from the source, with the source link shaped to R and machine links to 10R.

Not a test. Needs root and the sim_1p1d cluster up (sim/simctl status). Adds htb/tbf qdiscs on
ascsim0 and asv-11/12/21/22/23 and removes every one it added, even on failure. Prints
time-until-every-copy-verified / (S/R) for both runs (the lower bound is S/R: the bytes must
cross the source link once).

    .venv/bin/python benchmarks/weights_distribution.py [--mbytes 160] [--rate-mbyte 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from weights_helpers import make_checkpoint  # noqa: E402

HOSTS = {"sim-p0": "11", "sim-p1": "12", "sim-d0": "21", "sim-d1": "22", "sim-d2": "23"}
BRIDGE, BIND, PORT = "ascsim0", "10.250.0.1", 18632
WORK = Path("/tmp/bench-weights")
TARGET = "/root/.cache/bench-weights"
KEY = "/var/lib/ascend-sim/ssh/id_ed25519"


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def shape(rate: int) -> list[str]:
    """Source traffic (sport PORT) leaving the bridge to any machine: R, shared; every other flow
    on the bridge unshaped. Each machine's port: 10R. Returns the devices shaped."""
    run(["tc", "qdisc", "add", "dev", BRIDGE, "root", "handle", "1:", "htb", "default", "20"])
    shaped = [BRIDGE]
    run(["tc", "class", "add", "dev", BRIDGE, "parent", "1:", "classid", "1:10", "htb", "rate", "%dbit" % (8 * rate)])
    run(["tc", "class", "add", "dev", BRIDGE, "parent", "1:", "classid", "1:20", "htb", "rate", "10gbit"])
    run(["tc", "filter", "add", "dev", BRIDGE, "parent", "1:", "protocol", "ip", "u32",
         "match", "ip", "sport", str(PORT), "0xffff", "flowid", "1:10"])
    for octet in HOSTS.values():
        dev = "asv-%s" % octet
        run(["tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "%dbit" % (80 * rate),
             "burst", "256kb", "latency", "100ms"])
        shaped.append(dev)
    return shaped


def unshape(devices: list[str]) -> None:
    for dev in devices:
        run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def wipe() -> None:
    for octet in HOSTS.values():
        run(["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "root@10.250.0.%s" % octet, "rm", "-rf", TARGET], check=False)


def deploy(distribution: str) -> float:
    """Run download_weights.yml; seconds until it returned with every copy verified."""
    argv = [str(REPO / ".venv/bin/ansible-playbook"), "playbooks/download_weights.yml", "-i", "inventories/sim_1p1d/hosts.yml",
            "-e", "download_weights_hosts=%s" % ":".join(HOSTS), "-e", "model_weights_source=http",
            "-e", "model_weights_storage=local", "-e", "model_weights_distribution=%s" % distribution,
            "-e", "model_weights_http_url=http://%s:%d/ckpt/" % (BIND, PORT), "-e", "model_weights_path=%s" % TARGET,
            "-e", "model_weights_mtp_adjust=false", "-e", "model_weights_poll_interval=1"]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit("%s run failed (rc %d):\n%s" % (distribution, proc.returncode, proc.stdout[-4000:]))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=160, help="checkpoint size S in MiB (approx.)")
    parser.add_argument("--rate-mbyte", type=float, default=4.0, help="source link R in MiB/s")
    args = parser.parse_args()
    rate = int(args.rate_mbyte * 1048576)
    shutil.rmtree(WORK, ignore_errors=True)
    shards = 8
    make_checkpoint(WORK / "ckpt", layers=shards + 1, vocab=2048, hidden=256, filler_shards=shards,
                    filler_bytes=args.mbytes * 1048576 // (2 * shards))
    size = sum(f.stat().st_size for f in (WORK / "ckpt").iterdir())
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(PORT), "--bind", BIND, "--directory", str(WORK)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shaped: list[str] = []
    try:
        time.sleep(1)
        shaped = shape(rate)
        bound = size / rate
        print("S = %.1f MiB, R = %.1f MiB/s, machine links 10R, 5 machines; lower bound S/R = %.1f s"
              % (size / 1048576, rate / 1048576, bound))
        for distribution in ("tree", "direct"):
            wipe()
            took = deploy(distribution)
            print("%-7s %6.1f s  = %.2f x S/R" % ("local" if distribution == "tree" else "naive", took, took / bound))
    finally:
        unshape(shaped)
        server.terminate()
        server.wait(timeout=10)
        wipe()
        shutil.rmtree(WORK, ignore_errors=True)
    left = run(["tc", "qdisc", "show"]).stdout
    print("qdiscs left on shaped devices:", [line for line in left.splitlines() if any(d + " " in line and "htb" in line or "tbf" in line for d in shaped)])


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root (tc, sim cluster)")
    main()
