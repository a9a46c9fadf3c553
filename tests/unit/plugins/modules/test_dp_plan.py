"""Run ascend_ops.vllm.dp_plan through ansible with an explicit `hosts` list, in normal and check mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import plan, resolve_profile

DEFAULTS = Path(__file__).resolve().parents[4] / "roles" / "vllm" / "defaults" / "main"
HARDWARE = yaml.safe_load((DEFAULTS / "hardware.yml").read_text())["vllm_hardware_profiles"]
MODELS = yaml.safe_load((DEFAULTS / "models.yml").read_text())["vllm_models"]
PROFILES = yaml.safe_load((DEFAULTS / "profiles.yml").read_text())["vllm_deployment_profiles"]


def host(name: str, group: str, address: str, **keys) -> dict:
    """One planner HostSpec of the seed's 1P1D w8a8 layout on A3."""
    engine = group in ("prefill", "decode")
    spec = {
        "name": name, "groups": [group], "address": address, "nic": "enp23s0f3", "instance": None,
        "hardware": dict(HARDWARE["a3"], key="a3"), "npu_count": None, "tp_size": 16, "dp_size_local": 1,
        "dp_rank_start": None, "dp_mode": "external", "api_port": 6700, "dp_rpc_port": 10521, "kv_port": 36000,
        "model": MODELS["glm5_w8a8"], "model_path": "/root/.cache/glm5-w8a8",
        "profile": resolve_profile(PROFILES, f"pd_a3_w8a8_{group}") if engine else {},
        "env_overrides": {}, "serve_overrides": {}, "additional_config_overrides": {},
    }
    spec.update(keys)
    return spec


def hosts_1p1d(decode_local: int) -> list[dict]:
    decode = {"tp_size": 4, "dp_size_local": decode_local, "api_port": 6721, "dp_rpc_port": 10523, "kv_port": 37000}
    return [host("prefill0", "prefill", "198.51.100.10"),
            host("decode0", "decode", "198.51.100.20", **decode),
            host("decode1", "decode", "198.51.100.21", **decode),
            host("proxy0", "proxy", "198.51.100.30")]


PROXY = {"backend": "ascend_pd_proxy", "port": 8000, "health_interval": 2}


@pytest.mark.parametrize("check", [False, True])
def test_plans_explicit_hosts(run_module, check):
    hosts = hosts_1p1d(4)
    result = run_module("dp_plan", {"hosts": hosts, "proxy": PROXY}, check=check)
    assert result["_status"] == "SUCCESS" and result["changed"] is False
    want = json.loads(json.dumps(plan({"hosts": hosts, "proxy": PROXY})))
    assert result["plan"] == want
    planned = result["plan"]
    assert planned["mode"] == "pd" and sorted(planned["hosts"]) == ["decode0", "decode1", "prefill0"]
    assert planned["proxy"]["argv"] == [
        "ascend-pd-proxy", "--port", "8000", "--host", "0.0.0.0",
        "--prefiller-hosts", "198.51.100.10", "--prefiller-ports", "6700",
        "--decoder-hosts", *["198.51.100.20"] * 4, *["198.51.100.21"] * 4,
        "--decoder-ports", *[str(6721 + i) for i in range(4)] * 2, "--health-interval", "2"]
    assert [launch["kv_ports"] for launch in planned["hosts"]["decode1"]["launches"]] == [
        [37000 + 4 * rank, 37000 + 4 * rank + 3] for rank in range(4, 8)]
    # The table names every launch and the proxy.
    assert len(result["table"]) == 1 + 1 + 8 + 1
    assert result["table"][-1].split()[:4] == ["proxy0", "198.51.100.30", "proxy", "ascend_pd_proxy"]


@pytest.mark.parametrize("check", [False, True])
def test_rejected_plan_fails_with_error_lines(run_module, check):
    result = run_module("dp_plan", {"hosts": hosts_1p1d(5), "proxy": PROXY}, check=check)
    assert result["_status"] == "FAILED" and result.get("changed", False) is False
    lines = result["msg"].splitlines()
    assert lines == ["plan rejected:"] + [
        f"host decode{i} (decode): vllm_tp_size 4 x vllm_dp_size_local 5 = 20 NPUs > 16 NPUs of hardware "
        "Atlas 800 A3; lower one of them" for i in range(2)]
    assert "plan" not in result
