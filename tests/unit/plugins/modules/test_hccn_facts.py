"""Run ascend_ops.vllm.hccn_facts through ansible against fake hccn_tool / npu-smi that print fixtures."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path
from typing import Dict

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HCCN = FIXTURES / "hccn_tool"

# hccn_tool -i N -<check> -g prints DIR/N/<check>.txt; exits with DIR/N/<check>.rc when present;
# an unknown device or check fails like the real tool does.
FAKE_TOOL = '''#!{python}
import pathlib, sys
root = pathlib.Path({root!r})
args = sys.argv[1:]
if len(args) != 4 or args[0] != "-i" or args[3] != "-g":
    sys.exit("usage: hccn_tool -i N -<check> -g; got %r" % args)
dev = root / args[1]
if not dev.is_dir():
    sys.stderr.write("device id %s is invalid\\n" % args[1]); sys.exit(1)
out = dev / (args[2][1:] + ".txt")
if not out.exists():
    sys.stderr.write("unsupported command %s\\n" % args[2]); sys.exit(1)
sys.stdout.write(out.read_text())
rc = dev / (args[2][1:] + ".rc")
sys.exit(int(rc.read_text()) if rc.exists() else 0)
'''


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def fake_devices(tmp_path: Path, devices: Dict[int, Dict[str, str]]) -> str:
    """Lay out DIR/N/<check>.txt from fixture names (or literal text starting with '=') and return the tool."""
    root = tmp_path / "devices"
    for dev, checks in devices.items():
        (root / str(dev)).mkdir(parents=True)
        for check, source in checks.items():
            target = root / str(dev) / f"{check}.txt"
            if source.startswith("="):
                target.write_text(source[1:])
            else:
                shutil.copy(HCCN / source, target)
    return executable(tmp_path / "hccn_tool", FAKE_TOOL.format(python=sys.executable, root=str(root)))


def fake_npu_smi(tmp_path: Path, fixture: str) -> str:
    return executable(tmp_path / "npu-smi", f"#!/bin/sh\n[ \"$1\" = info ] || exit 2\ncat '{FIXTURES / 'npu_smi' / fixture}'\n")


TLS_DEV1 = (HCCN / "tls_switch_2dev.txt").read_text().splitlines()[1] + "\n"
A2_DEVICES = {
    0: {"link": "link_up.txt", "net_health": "net_health_success.txt", "ip": "ip_single.txt",
        "netdetect": "netdetect_addr.txt", "gateway": "gateway_single.txt", "tls": "tls_enabled.txt",
        "lldp": "lldp_port_desc.txt"},
    1: {"link": "link_down.txt", "net_health": "net_health_fault.txt", "ip": "ip_no_ipconf.txt",
        "netdetect": "netdetect.txt", "gateway": "gateway_2dev.txt", "tls": "=" + TLS_DEV1, "lldp": "lldp_full.txt"},
}


@pytest.mark.parametrize("check", [False, True])
def test_a2_two_devices_with_problems(run_module, tmp_path, check):
    tool = fake_devices(tmp_path, A2_DEVICES)
    (tmp_path / "devices" / "1" / "ip.rc").write_text("1")  # 'Get ipconf failed' exits non-zero: still no-IP data
    conf = tmp_path / "hccn.conf"
    shutil.copy(HCCN / "hccn.conf", conf)
    result = run_module("hccn_facts", {"device_count": 2, "hardware": "a2", "hccn_tool_path": tool,
                                       "hccn_conf_path": str(conf)}, check=check)
    assert result["_status"] == "SUCCESS" and result["changed"] is False
    dev0, dev1 = result["devices"]
    assert dev0 == {
        "device": 0, "link": "UP", "net_health": "Success", "ip": {"ipaddr": "29.1.137.205", "netmask": "255.255.0.0"},
        "netdetect": "29.1.0.1", "gateway": [{"gateway": "29.1.0.1", "iface": "eth3"}],
        "tls": {"dev_id": 3, "switch": 1, "preconfigured": 0, "alarm_threshold_days": 30},
        "lldp": {"chassis_mac": "38:4c:4f:12:ab:cd", "port_ifname": "400GE1/1/5:1", "mgmt_address": "10.20.0.1",
                 "max_frame_size": 9600, "system_description": "Huawei YunShan OS",
                 "tlvs": ["Chassis ID", "End of LLDPDU", "Management Address", "Maximum Frame Size",
                          "Port Description", "Port ID", "System Description", "System Name", "Time To Live"]},
    }
    assert (dev1["link"], dev1["net_health"], dev1["ip"], dev1["tls"]["switch"]) == ("DOWN", "Fault", None, 0)
    assert dev1["lldp"]["port_ifname"] == "400GE1/1/20:2" and "vnic" not in dev1
    assert result["hccn_conf_present"] is True
    assert result["hccn_conf"]["7"]["address"] == "29.1.170.143"
    assert result["problems"] == [
        "device 1: link is DOWN (hccn_tool -i 1 -link -g)",
        "device 1: net health is Fault, expected Success",
        "device 1: no IP configured (hccn_tool -i 1 -ip -s address ...)",
        "TLS switch differs between devices: {0: 1, 1: 0}",
    ]


@pytest.mark.parametrize("check", [False, True])
def test_a3_auto_counts_devices_and_adds_vnic(run_module, tmp_path, check):
    healthy = {"link": "link_up.txt", "net_health": "net_health_success.txt", "vnic": "vnic_a3.txt"}
    tool = fake_devices(tmp_path, {dev: healthy for dev in range(4)})
    result = run_module("hccn_facts", {
        "checks": ["link", "net_health", "vnic"], "hccn_tool_path": tool,
        "npu_smi_path": fake_npu_smi(tmp_path, "info_a3_partial.txt"),
        "hccn_conf_path": str(tmp_path / "absent.conf")}, check=check)
    assert result["_status"] == "SUCCESS" and result["changed"] is False
    assert result["hardware"] == "a3"
    assert [d["device"] for d in result["devices"]] == [0, 1, 2, 3]
    assert result["devices"][3] == {"device": 3, "link": "UP", "net_health": "Success",
                                    "vnic": {"link": "UP", "ipaddr": "192.168.2.199", "netmask": "255.255.255.0"}}
    assert (result["hccn_conf_present"], result["hccn_conf"], result["problems"]) == (False, {}, [])


def test_ip_mismatch_with_hccn_conf_is_a_problem(run_module, tmp_path):
    tool = fake_devices(tmp_path, {7: {"ip": "ip_single.txt"}})
    conf = tmp_path / "hccn.conf"
    shutil.copy(HCCN / "hccn.conf", conf)
    result = run_module("hccn_facts", {"devices": [7], "hardware": "a2", "checks": ["ip"], "hccn_tool_path": tool,
                                       "hccn_conf_path": str(conf)})
    assert result["problems"] == ["device 7: IP 29.1.137.205 differs from hccn.conf address_7=29.1.170.143"]


@pytest.mark.parametrize("args, message", [
    ({"devices": [5], "npu_smi": "info_a3_partial.txt"}, "invalid devices [5]: npu-smi lists 4 logical devices"),
    ({"device_count": 1, "hardware": "a2", "checks": ["vnic"]}, "check 'vnic' needs A3 hardware, but hardware is a2: drop it from checks"),
    ({"device_count": 3, "hardware": "a2", "checks": ["link"]}, "device 2: '{tool} -i 2 -link -g' failed with rc=1: "
                                                                "device id 2 is invalid"),
    ({"devices": [1], "hardware": "a2", "checks": ["lldp"]}, "device 1: '{tool} -i 1 -lldp -g' failed with rc=1: "
                                                             "unsupported command -lldp"),
    ({"devices": [0], "hardware": "a2", "checks": ["link", "net_health"]},
     "device 0: cannot parse the output of '{tool} -i 0 -net_health -g': unexpected line in -net_health -g output "
     "at line 1: 'net health status: Broken'"),
])
def test_failures_name_device_command_and_value(run_module, tmp_path, args, message):
    tool = fake_devices(tmp_path, {0: {"link": "link_up.txt", "net_health": "=net health status: Broken\n"},
                                   1: {"link": "link_up.txt"}})
    args = dict(args)
    if "npu_smi" in args:
        args["npu_smi_path"] = fake_npu_smi(tmp_path, args.pop("npu_smi"))
    result = run_module("hccn_facts", dict(args, hccn_tool_path=tool, hccn_conf_path=str(tmp_path / "none")))
    assert result["_status"] == "FAILED"
    assert result["msg"] == message.format(tool=tool)


def test_broken_hccn_conf_fails_naming_file(run_module, tmp_path):
    tool = fake_devices(tmp_path, {0: {"link": "link_up.txt"}})
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=29.1.137.205\naddress 29.1.137.206\n")
    result = run_module("hccn_facts", {"devices": [0], "hardware": "a2", "checks": ["link"], "hccn_tool_path": tool,
                                       "hccn_conf_path": str(conf)})
    assert result["_status"] == "FAILED"
    assert result["msg"] == f"cannot parse {conf}: hccn.conf: expected 'key_N=value' at line 2: 'address 29.1.137.206'"
