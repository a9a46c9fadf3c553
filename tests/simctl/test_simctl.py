"""sim/simctl end to end: real machines, real ssh, real pings, then a complete cleanup."""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from simctl_support import MACHINES, NPUS, ssh, simctl, write_inventory

pytestmark = pytest.mark.sim
OTHER = {"sim-a": "sim-b", "sim-b": "sim-a"}


def device_ips(address: str) -> list[str]:
    octet = address.rsplit(".", 1)[1]
    return [f"10.251.{octet}.{10 + i}" for i in range(NPUS)]


def ping(src: str, dest: str) -> bool:
    return ssh(MACHINES[src], f"ping -c1 -W2 {dest}").returncode == 0


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_ssh_reaches_machine_with_its_hostname(cluster, name):
    res = ssh(MACHINES[name], "hostname")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == name


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_systemd_is_pid1_and_running(cluster, name):
    res = ssh(MACHINES[name], "cat /proc/1/comm; systemctl is-system-running")
    assert res.stdout.split() == ["systemd", "running"], res.stdout + res.stderr


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_device_ips_answer_ping_from_the_other_machine(cluster, name):
    for ip in device_ips(MACHINES[name]):
        assert ping(OTHER[name], ip), f"{OTHER[name]} cannot ping device IP {ip} of {name}"


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_npu_smi_info_lists_every_npu(cluster, name):
    res = ssh(MACHINES[name], "npu-smi info")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("Ascend910") == NPUS


def test_state_file_matches_device_ips(cluster):
    res = ssh(MACHINES["sim-a"], "cat /etc/ascend-sim/npu.json")
    state = json.loads(res.stdout)
    assert [d["ip"] for d in state["devices"]] == device_ips(MACHINES["sim-a"])
    conf = ssh(MACHINES["sim-a"], "cat /etc/hccn.conf").stdout
    assert f"address_1={device_ips(MACHINES['sim-a'])[1]}" in conf.splitlines()


def test_up_twice_keeps_the_running_set(cluster):
    before = Path("/run/ascend-sim/pids/sim-a.leader").read_text()
    res = simctl("up", "-i", json.loads(Path("/run/ascend-sim/state.json").read_text())["inventory"])
    assert "already up" in res.stdout
    assert Path("/run/ascend-sim/pids/sim-a.leader").read_text() == before


def test_fault_link_down_removes_the_device_ip(cluster):
    ip = device_ips(MACHINES["sim-b"])[1]
    simctl("fault", "sim-b", "npu", "1", "link", "DOWN")
    try:
        assert not ping("sim-a", ip)
        link = ssh(MACHINES["sim-b"], "/usr/local/Ascend/driver/tools/hccn_tool -i 1 -link -g").stdout
        assert "DOWN" in link
    finally:
        simctl("fault", "sim-b", "npu", "1", "link", "UP")
    assert ping("sim-a", ip)


def test_fault_port_occupy_and_free(cluster):
    simctl("fault", "sim-a", "port", "8199", "occupy")
    with socket.create_connection((MACHINES["sim-a"], 8199), timeout=3):
        pass
    simctl("fault", "sim-a", "port", "8199", "free")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((MACHINES["sim-a"], 8199), timeout=3)


def test_fault_rejects_unknown_npu(cluster):
    res = simctl("fault", "sim-a", "npu", str(NPUS), "tls", "1", check=False)
    assert res.returncode == 1
    assert f"NPU {NPUS} does not exist" in res.stderr


def test_exec_runs_inside_the_machine(cluster):
    res = subprocess.run(["python3", str(Path(__file__).resolve().parents[2] / "sim" / "simctl"),
                          "exec", "sim-b", "--", "cat", "/etc/hostname"], capture_output=True, text=True, check=False)
    assert res.stdout.strip() == "sim-b"


def test_down_leaves_nothing_behind(cluster):
    pid_files = [*Path("/run/ascend-sim/pids").glob("*"), *Path("/run/ascend-sim/faults").glob("*")]
    pids = [int(p.read_text()) for p in pid_files]
    assert len(pids) == 2 * len(MACHINES)
    simctl("down")
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
                .stdout.split() if n.startswith("ascsim-")]
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(("/var/lib/ascend-sim/", "/run/ascend-sim/"))]
    assert not [n.name for n in Path("/sys/class/net").iterdir() if n.name.startswith("asv-")]
    assert not Path("/sys/class/net/ascsim0").exists()
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
    assert not list(Path("/sys/fs/cgroup").glob("*/ascend-sim"))


def test_bad_inventory_names_host_and_value(tmp_path):
    inventory = write_inventory(tmp_path)
    inventory.write_text(inventory.read_text().replace("10.250.0.42", "192.168.7.9"))
    res = simctl("up", "-i", str(inventory), check=False)
    assert res.returncode == 1
    assert "sim-b" in res.stderr and "192.168.7.9" in res.stderr
