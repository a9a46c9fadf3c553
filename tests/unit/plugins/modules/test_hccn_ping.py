"""Run ascend_ops.vllm.hccn_ping through ansible against a fake hccn_tool that prints ping fixtures."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest

HCCN = Path(__file__).resolve().parents[2] / "fixtures" / "hccn_tool"

# hccn_tool -i D -ping -g address X pkt C prints DIR/D/X.txt after SLEEP seconds and logs start/end
# times to DIR/log, so tests can see which pings overlapped; unknown pairs fail like the real tool.
FAKE_TOOL = '''#!{python}
import pathlib, sys, time
root = pathlib.Path({root!r})
args = sys.argv[1:]
if len(args) != 8 or args[0] != "-i" or args[2:5] != ["-ping", "-g", "address"] or args[6] != "pkt":
    sys.exit("usage: hccn_tool -i D -ping -g address X pkt C; got %r" % args)
out = root / args[1] / (args[5] + ".txt")
if not out.exists():
    sys.stderr.write("ping %s from device %s failed: no route\\n" % (args[5], args[1])); sys.exit(1)
start = time.time()
time.sleep({sleep})
with open(root / "log", "a") as log:
    log.write("%s %s %s %f %f\\n" % (args[1], args[5], args[7], start, time.time()))
sys.stdout.write(out.read_text())
'''


def fake_tool(tmp_path: Path, pairs: Dict[Tuple[int, str], str], sleep: float = 0.0) -> str:
    root = tmp_path / "pings"
    for (dev, address), fixture in pairs.items():
        (root / str(dev)).mkdir(parents=True, exist_ok=True)
        shutil.copy(HCCN / fixture, root / str(dev) / f"{address}.txt")
    tool = tmp_path / "hccn_tool"
    tool.write_text(FAKE_TOOL.format(python=sys.executable, root=str(root), sleep=sleep))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(tool)


def read_log(tmp_path: Path):
    rows = [line.split() for line in (tmp_path / "pings" / "log").read_text().splitlines()]
    return [(int(dev), addr, int(pkt), float(start), float(end)) for dev, addr, pkt, start, end in rows]


PAIRS = [{"device": 3, "address": "29.1.137.205"}, {"device": 5, "address": "29.1.170.143"},
         {"device": 2, "address": "29.1.9.9"}, {"device": 3, "address": "29.1.137.205"}]
FILES = {(3, "29.1.137.205"): "ping_single.txt", (5, "29.1.170.143"): "ping_loss_typo_seq.txt",
         (2, "29.1.9.9"): "ping_total_loss.txt"}


@pytest.mark.parametrize("check", [False, True])
def test_lost_pings_are_data_and_devices_run_in_parallel(run_module, tmp_path, check):
    tool = fake_tool(tmp_path, FILES, sleep=1.0)
    result = run_module("hccn_ping", {"pairs": PAIRS, "hccn_tool_path": tool}, check=check)
    assert result["_status"] == "SUCCESS" and result["changed"] is False
    assert result["failed_pairs"] == 2
    assert [(r["device"], r["sent"], r["received"], r["loss_pct"], r["ok"]) for r in result["results"]] == [
        (3, 3, 3, 0.0, True), (5, 3, 2, 33.33, False), (2, 3, 0, 100.0, False), (3, 3, 3, 0.0, True)]
    first = result["results"][0]
    assert (first["address"], first["times_ms"], first["avg_ms"]) == ("29.1.137.205", [1.418, 0.034, 0.04], 0.497333)
    assert result["results"][2]["avg_ms"] is None
    log = read_log(tmp_path)
    assert sorted((dev, addr, pkt) for dev, addr, pkt, _start, _end in log) == sorted(
        (p["device"], p["address"], 3) for p in PAIRS)
    dev3 = sorted((start, end) for dev, _addr, _pkt, start, end in log if dev == 3)
    assert dev3[0][1] <= dev3[1][0], "two pings ran at once on device 3"
    others = [(start, end) for dev, _addr, _pkt, start, end in log if dev != 3]
    assert any(start < dev3[0][1] and dev3[0][0] < end for start, end in others), "devices did not ping in parallel"


def test_max_parallel_one_serialises_devices(run_module, tmp_path):
    tool = fake_tool(tmp_path, FILES, sleep=0.3)
    result = run_module("hccn_ping", {"pairs": PAIRS[:3], "count": 3, "max_parallel": 1, "hccn_tool_path": tool})
    assert result["failed_pairs"] == 2
    spans = sorted((start, end) for _dev, _addr, _pkt, start, end in read_log(tmp_path))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_count_is_passed_as_pkt(run_module, tmp_path):
    tool = fake_tool(tmp_path, FILES)
    result = run_module("hccn_ping", {"pairs": PAIRS[:1], "count": 7, "hccn_tool_path": tool})
    # the fixture reports 3 packets, so 7 requested shows as sent=3 and is still reported as data
    assert result["results"][0]["sent"] == 3 and read_log(tmp_path)[0][2] == 7


@pytest.mark.parametrize("pairs, message", [
    ([{"device": 3, "address": "29.1.137.205"}, {"device": 4, "address": "29.1.1.1"}],
     "hccn_tool ping failed: device 4 -> 29.1.1.1: '{tool} -i 4 -ping -g address 29.1.1.1 pkt 3' rc=1: "
     "ping 29.1.1.1 from device 4 failed: no route"),
    ([{"device": 4, "address": "29.1.137.205"}],
     "hccn_tool ping failed: device 4 -> 29.1.137.205: '{tool} -i 4 -ping -g address 29.1.137.205 pkt 3': "
     "output is for device 3 -> 29.1.137.205"),
    ([{"device": 6, "address": "29.1.6.6"}],
     "hccn_tool ping failed: device 6 -> 29.1.6.6: '{tool} -i 6 -ping -g address 29.1.6.6 pkt 3' rc=0: "
     "cannot parse its output: unexpected line in -ping -g output at line 1: 'link status: UP'"),
    ([{"device": 0, "address": "29.1.6"}], "pairs[0]: address '29.1.6' is not an IPv4 address"),
])
def test_tool_and_parse_errors_fail(run_module, tmp_path, pairs, message):
    tool = fake_tool(tmp_path, {(3, "29.1.137.205"): "ping_single.txt", (4, "29.1.137.205"): "ping_single.txt",
                                (6, "29.1.6.6"): "link_up.txt"})
    result = run_module("hccn_ping", {"pairs": pairs, "hccn_tool_path": tool})
    assert result["_status"] == "FAILED"
    assert result["msg"] == message.format(tool=tool)
