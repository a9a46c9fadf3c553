#!/usr/bin/env python
"""Weights distribution on 5 simulated machines: the collection's local mode (one download, a doubling tree of
in-cluster copies that follows it) vs every machine downloading from the source, on links shaped like a site.

Not a test. Needs root and the sim_1p1d cluster up (sim/simctl up -i inventories/sim_1p1d/hosts.yml).
The source (an HTTP mirror on the bridge address) sits behind one link limited to R: an htb class on ascsim0 for
its traffic, shared by every download. Each machine's link is limited to 10R both ways (tbf on its host-side veth
for what it receives, tbf on eth0 inside its netns for what it sends). Every qdisc added is removed again, even
on failure. Prints the wall time of download_weights.yml until every copy is verified, divided by the lower
bound S/R (the bytes must cross the source link once), for both runs; the playbook's output, time-stamped, is
kept in /tmp/bench-weights-logs/.

    .venv/bin/python benchmarks/weights_distribution.py [--mbytes 512] [--rate-mbyte 8] [--shards 32]
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
LOGS = Path("/tmp/bench-weights-logs")
TARGET = "/root/.cache/bench-weights"
KEY = "/var/lib/ascend-sim/ssh/id_ed25519"


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def shape(rate: int) -> list[tuple[str, str]]:
    """Source traffic (sport PORT) leaving the bridge to any machine: R, shared; every other flow on the
    bridge unshaped. Each machine: 10R in (its host-side veth) and 10R out (eth0 in its netns).
    Returns the (netns or '', device) pairs shaped."""
    shaped = [("", BRIDGE)]
    run(["tc", "qdisc", "add", "dev", BRIDGE, "root", "handle", "1:", "htb", "default", "20"])
    run(["tc", "class", "add", "dev", BRIDGE, "parent", "1:", "classid", "1:10", "htb", "rate", "%dbit" % (8 * rate)])
    run(["tc", "class", "add", "dev", BRIDGE, "parent", "1:", "classid", "1:20", "htb", "rate", "10gbit"])
    run(["tc", "filter", "add", "dev", BRIDGE, "parent", "1:", "protocol", "ip", "u32",
         "match", "ip", "sport", str(PORT), "0xffff", "flowid", "1:10"])
    tbf = ["tbf", "rate", "%dbit" % (80 * rate), "burst", "256kb", "latency", "100ms"]
    for name, octet in HOSTS.items():
        run(["tc", "qdisc", "add", "dev", "asv-%s" % octet, "root", *tbf])
        shaped.append(("", "asv-%s" % octet))
        run(["ip", "netns", "exec", "ascsim-%s" % name, "tc", "qdisc", "add", "dev", "eth0", "root", *tbf])
        shaped.append(("ascsim-%s" % name, "eth0"))
    return shaped


def unshape(devices: list[tuple[str, str]]) -> None:
    for netns, dev in devices:
        run((["ip", "netns", "exec", netns] if netns else []) + ["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def left_over(devices: list[tuple[str, str]]) -> list[str]:
    """Shaping qdiscs still on the devices shaped (should be none)."""
    left = []
    for netns, dev in devices:
        out = run((["ip", "netns", "exec", netns] if netns else []) + ["tc", "qdisc", "show", "dev", dev],
                  check=False).stdout
        left += ["%s %s: %s" % (netns, dev, line) for line in out.splitlines() if " htb " in line or " tbf " in line]
    return left


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
    LOGS.mkdir(exist_ok=True)
    log = LOGS / ("%s.log" % distribution)
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, ANSIBLE_NOCOLOR="1", PYTHONUNBUFFERED="1"))
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write("%7.2f %s" % (time.monotonic() - start, line))
        returncode = proc.wait()
    took = time.monotonic() - start
    if returncode != 0:
        raise SystemExit("%s run failed (rc %d), see %s:\n%s" % (distribution, returncode, log, log.read_text()[-4000:]))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbytes", type=int, default=512, help="checkpoint size S in MiB (approx.)")
    parser.add_argument("--rate-mbyte", type=float, default=8.0, help="source link R in MiB/s")
    parser.add_argument("--shards", type=int, default=32, help="shards between the embedding and head shards")
    parser.add_argument("--skip-naive", action="store_true", help="only the collection's local mode")
    args = parser.parse_args()
    rate = int(args.rate_mbyte * 1048576)
    shutil.rmtree(WORK, ignore_errors=True)
    shards = args.shards
    make_checkpoint(WORK / "ckpt", layers=shards + 1, vocab=2048, hidden=256, filler_shards=shards,
                    filler_bytes=args.mbytes * 1048576 // (2 * shards))
    size = sum(f.stat().st_size for f in (WORK / "ckpt").iterdir())
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(PORT), "--bind", BIND, "--directory", str(WORK)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shaped: list[tuple[str, str]] = []
    try:
        time.sleep(1)
        shaped = shape(rate)
        bound = size / rate
        print("S = %.1f MiB in %d files, R = %.1f MiB/s, machine links 10R both ways, 5 machines; lower bound S/R = %.1f s"
              % (size / 1048576, len(list((WORK / "ckpt").iterdir())), rate / 1048576, bound), flush=True)
        for distribution in ("tree", "direct")[:1 if args.skip_naive else 2]:
            wipe()
            took = deploy(distribution)
            label, what = (("local", "one download, in-cluster copies behind it") if distribution == "tree"
                           else ("naive", "every machine downloads from the source"))
            print("%-7s %6.1f s  = %.2f x S/R  (%s)" % (label, took, took / bound, what), flush=True)
    finally:
        unshape(shaped)
        server.terminate()
        server.wait(timeout=10)
        wipe()
        shutil.rmtree(WORK, ignore_errors=True)
    print("qdiscs left on shaped devices:", left_over(shaped))


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root (tc, sim cluster)")
    main()
