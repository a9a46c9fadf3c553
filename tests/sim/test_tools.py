"""Fake npu-smi / hccn_tool against the real fixture layouts, and state-file fault injection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim_support import FIXTURES, run_tool

NUM = re.compile(r"\d+(\.\d+)?")


def _mask(text: str) -> list[str]:
    """Values masked: IPs -> IP, numbers -> 9, padding runs -> one space."""
    text = re.sub(r"\d+\.\d+\.\d+\.\d+", "IP", text)
    return [re.sub(r"(?<=\S) {2,}", " ", NUM.sub("9", line)) for line in text.splitlines()]


def _bars(text: str) -> list[list[int]]:
    """Column separator positions per line (the table layout)."""
    return [[i for i, ch in enumerate(line) if ch in "|+"] for line in text.splitlines()]


def _state_env(sim_env: dict[str, str], tmp_path: Path, hardware: str, count: int) -> dict[str, str]:
    path = tmp_path / f"{hardware}.json"
    res = run_tool("state", "--state", str(path), "init", "--hardware", hardware, "--npu-count", str(count),
                   "--ip-base", "127.0.0.20", env=sim_env)
    assert res.returncode == 0, res.stderr
    return {**sim_env, "VLLM_SIM_STATE": str(path)}


@pytest.mark.parametrize(("hardware", "fixture"), [("a2", "info_a2_910b3_partial.txt"), ("a3", "info_a3_partial.txt")])
def test_npu_smi_info_layout_matches_fixture(sim_env, tmp_path, hardware: str, fixture: str) -> None:
    env = _state_env(sim_env, tmp_path, hardware, 2 if hardware == "a2" else 4)
    out = run_tool("npu_smi", "info", env=env)
    assert out.returncode == 0
    expected = (FIXTURES / "npu_smi" / fixture).read_text()
    count = len(expected.splitlines())
    assert _mask(out.stdout)[:count] == _mask(expected)
    assert _bars(out.stdout)[:count] == _bars(expected)
    assert all(len(line) == 98 for line in out.stdout.splitlines())


def test_npu_smi_byte_identical_with_fixture_values(sim_env) -> None:
    from ascend_sim import npu_smi, state

    data = state.default_state("a2", 2)
    for dev, (power, temp, bus, used) in zip(data["devices"], [("102.8", 55, "0000:C1:00.0", 3338),
                                                               ("97.6", 54, "0000:C2:00.0", 3337)]):
        dev.update(power_w=power, temp_c=temp, bus_id=bus, hbm_used_mb=used)
    expected = (FIXTURES / "npu_smi" / "info_a2_910b3_partial.txt").read_text()
    assert npu_smi.render_info(data, {}).startswith(expected)


@pytest.mark.parametrize(("argv", "fixture", "lines"), [
    (["-link", "-g"], "link_up.txt", None),
    (["-net_health", "-g"], "net_health_success.txt", None),
    (["-ip", "-g"], "ip_loop_8.txt", 2),
    (["-gateway", "-g"], "gateway_2dev.txt", 1),
    (["-netdetect", "-g"], "netdetect.txt", None),
    (["-tls", "-g"], "tls_switch_2dev.txt", 1),
    (["-vnic", "-g"], "vnic_a3.txt", None),
])
def test_hccn_tool_layouts(sim_env, tmp_path, argv: list[str], fixture: str, lines: int | None) -> None:
    env = _state_env(sim_env, tmp_path, "a3", 4)
    out = run_tool("hccn_tool", "-i", "0", *argv, env=env)
    assert out.returncode == 0, out.stdout
    expected = _mask((FIXTURES / "hccn_tool" / fixture).read_text())
    assert _mask(out.stdout) == (expected[:lines] if lines else expected)


def test_lldp_layout(sim_env, tmp_path) -> None:
    env = _state_env(sim_env, tmp_path, "a2", 2)
    out = run_tool("hccn_tool", "-i", "1", "-lldp", "-g", env=env).stdout.splitlines()
    ifname = [line for line in out if "Ifname" in line]
    assert _mask(ifname[0]) == _mask((FIXTURES / "hccn_tool" / "lldp_ifname_loop_8.txt").read_text())[:1]
    titles = [line for line in (FIXTURES / "hccn_tool" / "lldp_full.txt").read_text().splitlines()
              if line.endswith("TLV")]
    assert [line for line in out if line.endswith("TLV")] == titles


def test_fault_injection_and_ping(sim_env, tmp_path) -> None:
    env = _state_env(sim_env, tmp_path, "a2", 4)
    ok = run_tool("hccn_tool", "-i", "2", "-ping", "-g", "address", "127.0.0.1", "pkt", "3", env=env)
    assert _mask(ok.stdout) == _mask((FIXTURES / "hccn_tool" / "ping_single.txt").read_text())
    assert "device 2 PING 127.0.0.1" in ok.stdout and ", 0.00% packet loss" in ok.stdout
    assert run_tool("state", "--npu", "2", "link", "DOWN", env=env).returncode == 0
    assert run_tool("state", "--npu", "3", "net_health", "Fault", env=env).returncode == 0
    assert run_tool("hccn_tool", "-i", "2", "-link", "-g", env=env).stdout == "link status: DOWN\n"
    assert run_tool("hccn_tool", "-i", "3", "-net_health", "-g", env=env).stdout == "net health status: Fault\n"
    down = run_tool("hccn_tool", "-i", "2", "-ping", "-g", "address", "127.0.0.1", "pkt", "2", env=env)
    assert "2 packets transmitted, 0 received, 100.00% packet loss" in down.stdout
    # A device IP that is not configured on this host cannot reach anything.
    assert run_tool("state", "--npu", "1", "ip", "192.0.2.55", env=env).returncode == 0
    fake = run_tool("hccn_tool", "-i", "1", "-ping", "-g", "address", "127.0.0.1", env=env)
    assert fake.returncode == 1 and "192.0.2.55 is not configured on this host" in fake.stdout
    bad = run_tool("state", "--npu", "1", "link", "SIDEWAYS", env=env)
    assert bad.returncode == 1 and "link must be one of" in bad.stderr


@pytest.mark.parametrize(("argv", "needle"), [
    (["-i", "8", "-link", "-g"], "Invalid device id [8]"),
    (["-i", "0", "-vnic", "-g"], "vnic is not supported"),
    (["-i", "0", "-bogus", "-g"], "Usage: hccn_tool"),
])
def test_hccn_tool_errors(sim_env, argv: list[str], needle: str) -> None:
    out = run_tool("hccn_tool", *argv, env=sim_env)
    assert out.returncode == 1 and needle in out.stdout


def test_ip_missing(sim_env, tmp_path) -> None:
    env = _state_env(sim_env, tmp_path, "a2", 2)
    assert run_tool("state", "--npu", "0", "ip", "", env=env).returncode == 0
    out = run_tool("hccn_tool", "-i", "0", "-ip", "-g", env=env)
    assert out.returncode == 1 and out.stdout == "Get ipconf failed\n"
