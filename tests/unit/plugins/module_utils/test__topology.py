"""Unit tests of the topology planner: DP/PD shapes, one-line validation errors,
overrides, and hypothesis properties over random valid and faulty topologies.

Recipes (hardware, model variants, deployment profiles) are the role defaults,
read from roles/vllm/defaults/main, so the capacity and F-rule checks run on the
numbers the collection ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import (
    PlanError, deep_merge, plan, resolve_profile, topology_table,
)

DEFAULTS = Path(__file__).resolve().parents[4] / "roles" / "vllm" / "defaults" / "main"
HARDWARE = yaml.safe_load((DEFAULTS / "hardware.yml").read_text())["vllm_hardware_profiles"]
MODELS = yaml.safe_load((DEFAULTS / "models.yml").read_text())["vllm_models"]
PROFILES = yaml.safe_load((DEFAULTS / "profiles.yml").read_text())["vllm_deployment_profiles"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def host(name: str, *groups: str, hw: str = "a3", model: str | dict = "glm5_w8a8", profile: str | dict = "base",
         **keys) -> dict:
    """One HostSpec as plugins/action/dp_plan.py builds it; keyword arguments replace keys."""
    spec = {
        "name": name, "groups": list(groups), "address": None, "nic": "enp23s0f3", "instance": None,
        "hardware": dict(HARDWARE[hw], key=hw), "npu_count": None, "tp_size": 16, "dp_size_local": 1,
        "dp_rank_start": None, "dp_mode": "external", "api_port": 8077, "dp_rpc_port": 12890, "kv_port": 40000,
        "model": dict(MODELS[model]) if isinstance(model, str) else model, "model_path": "/models/glm5",
        "profile": resolve_profile(PROFILES, profile) if isinstance(profile, str) else profile,
        "env_overrides": {}, "serve_overrides": {}, "additional_config_overrides": {},
    }
    spec.update(keys)
    return spec


def cluster(*hosts: dict, proxy: dict | None = None, require_nic: list[str] | None = None) -> dict:
    """Planner input; a host without an address gets 192.0.2.<10 + its position>."""
    for index, spec in enumerate(hosts):
        if spec["address"] is None:
            spec["address"] = f"192.0.2.{10 + index}"
    return {"hosts": list(hosts), "proxy": proxy, "require_nic": require_nic}


def pd_cluster(prefill: list[dict], decode: list[dict], proxy: dict | None = None, **kw) -> dict:
    """A PD cluster with a separate proxy host after the engines."""
    return cluster(*prefill, *decode, host("px", "proxy"), proxy=proxy, **kw)


def rejected(spec: dict) -> list[str]:
    with pytest.raises(PlanError) as exc:
        plan(spec)
    assert str(exc.value) == "\n".join(exc.value.errors)
    return exc.value.errors


def one_line(errors: list[str], *needles: str) -> str:
    """The single error line that holds every needle."""
    hits = [line for line in errors if all(n in line for n in needles)]
    assert len(hits) == 1, (needles, errors)
    return hits[0]


def flags(argv: list[str]) -> dict:
    """`vllm serve MODEL --flag [value...]` as {flag: value}; a bare switch is True, JSON is parsed."""
    assert argv[:2] == ["vllm", "serve"] and not argv[2].startswith("--"), argv[:3]
    out: dict = {}
    i = 3
    while i < len(argv):
        flag = argv[i]
        assert flag.startswith("--") and flag not in out, (flag, argv)
        values = []
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(json.loads(argv[i]) if argv[i][:1] in "{[" else argv[i])
            i += 1
        out[flag] = values[0] if len(values) == 1 else (values or True)
    return out


def launches(planned: dict, name: str) -> list[dict]:
    return planned["hosts"][name]["launches"]


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------

def test_single_node_seed_5_1():
    planned = plan(cluster(host("node0", "engine", profile="single_a3_w8a8", dp_mode="internal")))
    assert planned["mode"] == "single" and planned["proxy"] is None and planned["warnings"] == []
    node = planned["hosts"]["node0"]
    assert node["ranks"] == [{"rank": 0, "local_rank": 0, "devices": list(range(16)), "kv_ports": None,
                              "api_port": 8077, "headless": False, "dp_master": "192.0.2.10", "dp_rpc_port": 12890}]
    (launch,) = node["launches"]
    assert launch["unit"] == "vllm-engine-r0.service" and launch["api_port"] == 8077
    assert launch["argv"][:11] == ["vllm", "serve", "/models/glm5", "--host", "0.0.0.0", "--port", "8077",
                                   "--data-parallel-size", "1", "--tensor-parallel-size", "16"]
    got = flags(launch["argv"])
    assert got["--quantization"] == "ascend" and got["--max-model-len"] == "40960"
    assert not {"--data-parallel-address", "--data-parallel-rank", "--headless", "--kv-transfer-config"} & set(got)
    # network_env: false and all 16 NPUs: no HCCL_IF_IP, no ASCEND_RT_VISIBLE_DEVICES (seed 5.1).
    assert "HCCL_IF_IP" not in launch["env"] and "ASCEND_RT_VISIBLE_DEVICES" not in launch["env"]
    assert launch["env"]["VLLM_ASCEND_ENABLE_MLAPO"] == "1"


@pytest.mark.parametrize("nodes, tp, local", [(2, 16, 1), (3, 16, 1), (2, 8, 2), (3, 4, 2)])
def test_internal_dp(nodes, tp, local):
    names = [f"node{i}" for i in range(nodes)]
    planned = plan(cluster(*[host(n, "engine", model="glm5_w4a8", dp_mode="internal", tp_size=tp,
                                  dp_size_local=local) for n in names]))
    dp = nodes * local
    assert planned["mode"] == "dp"
    inst = planned["instances"]["engine"]
    assert (inst["dp_size"], inst["master"], inst["master_address"]) == (dp, "node0", "192.0.2.10")
    assert [(s["host"], s["port"], s["ranks"]) for s in inst["api_servers"]] == [("node0", 8077, list(range(local)))]
    for i, name in enumerate(names):
        (launch,) = launches(planned, name)
        head = ["--host", "0.0.0.0", "--port", "8077"] + (["--headless"] if i else [])
        head += ["--data-parallel-size", str(dp), "--data-parallel-size-local", str(local)]
        head += ["--data-parallel-start-rank", str(i * local)] if i else []
        head += ["--data-parallel-address", "192.0.2.10", "--data-parallel-rpc-port", "12890",
                 "--tensor-parallel-size", str(tp)]
        assert launch["argv"][3:3 + len(head)] == head, name
        assert launch["ranks"] == list(range(i * local, (i + 1) * local))
        assert launch["headless"] is bool(i) and launch["api_port"] == (None if i else 8077)
        assert launch["devices"] == list(range(tp * local))
        assert launch["env"].get("ASCEND_RT_VISIBLE_DEVICES") == (
            None if tp * local == 16 else ",".join(map(str, range(tp * local))))
        assert launch["env"]["HCCL_IF_IP"] == f"192.0.2.{10 + i}"
        assert launch["env"]["GLOO_SOCKET_IFNAME"] == launch["env"]["HCCL_SOCKET_IFNAME"] == "enp23s0f3"


def test_external_dp_local_ranks():
    """launch_online_dp.py: rank = start + i, port = base + i, devices = i-th tp slice."""
    planned = plan(cluster(*[host(f"d{i}", "engine", tp_size=4, dp_size_local=4, api_port=6721,
                                  dp_rpc_port=10523) for i in range(2)]))
    servers = planned["instances"]["engine"]["api_servers"]
    assert [(s["host"], s["port"], s["ranks"]) for s in servers] == [
        (f"d{h}", 6721 + i, [4 * h + i]) for h in range(2) for i in range(4)]
    for h in range(2):
        for i, launch in enumerate(launches(planned, f"d{h}")):
            rank = 4 * h + i
            assert launch["name"] == f"vllm-engine-r{rank}" and launch["ranks"] == [rank]
            assert launch["env"]["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(str(4 * i + k) for k in range(4))
            got = flags(launch["argv"])
            assert (got["--port"], got["--data-parallel-size"], got["--data-parallel-rank"]) == (
                str(6721 + i), "8", str(rank))
            assert (got["--data-parallel-address"], got["--data-parallel-rpc-port"]) == ("192.0.2.10", "10523")
            assert "--headless" not in got and "--data-parallel-size-local" not in got


def seed_1p1d(**decode_keys) -> dict:
    prefill = [host(f"prefill{i}", "prefill", profile="pd_a3_w8a8_prefill", api_port=6700, dp_rpc_port=10521,
                    kv_port=30000) for i in range(2)]
    keys = {"tp_size": 4, "dp_size_local": 4, "api_port": 6721, "dp_rpc_port": 10523, "kv_port": 30100}
    keys.update(decode_keys)
    decode = [host(f"decode{i}", "decode", profile="pd_a3_w8a8_decode", **keys) for i in range(4)]
    return pd_cluster(prefill, decode)


def kv_config(launch: dict) -> dict:
    return flags(launch["argv"])["--kv-transfer-config"]


def test_pd_1p1d_seed_5_3():
    planned = plan(seed_1p1d())
    assert planned["mode"] == "pd"
    assert [(n, i["engine_id"], i["dp_size"], i["tp_size"]) for n, i in planned["instances"].items()] == [
        ("prefill", "0", 2, 16), ("decode", "1", 16, 4)]
    sizes = {"use_ascend_direct": True, "prefill": {"dp_size": 2, "tp_size": 16}, "decode": {"dp_size": 16, "tp_size": 4}}
    assert kv_config(launches(planned, "prefill1")[0]) == {
        "kv_connector": "MooncakeConnectorV1", "kv_role": "kv_producer", "kv_port": "30000", "engine_id": "0",
        "kv_connector_extra_config": sizes}
    assert kv_config(launches(planned, "decode3")[3]) == {
        "kv_connector": "MooncakeConnectorV1", "kv_role": "kv_consumer", "kv_port": "30100", "engine_id": "1",
        "kv_connector_extra_config": sizes}
    assert launches(planned, "decode0")[0]["env"]["ASCEND_A3_ENABLE"] == "1"
    proxy = planned["proxy"]
    assert [(s["host"], s["port"]) for s in proxy["prefillers"]] == [("prefill0", 6700), ("prefill1", 6700)]
    assert [(s["host"], s["port"]) for s in proxy["decoders"]] == [
        (f"decode{h}", 6721 + i) for h in range(4) for i in range(4)]
    table = topology_table(planned)
    assert len(table) == 1 + 2 + 16 + 1 and table[-1].split()[:3] == ["px", "192.0.2.16", "proxy"]


def test_pd_xpyd_two_prefill_instances():
    """Two prefill instances named by `instance`, interleaved in the inventory, plus one decode instance."""
    def p(name, inst):
        return host(name, "prefill", instance=inst, api_port=6700, kv_port=40000)
    prefill = [p("pa0", "pA"), p("pb0", "pB"), p("pa1", "pA"), p("pb1", "pB")]
    decode = [host(f"d{i}", "decode", tp_size=4, dp_size_local=4, api_port=6721, kv_port=41000) for i in range(2)]
    planned = plan(pd_cluster(prefill, decode))
    insts = planned["instances"]
    assert [(n, i["engine_id"], i["hosts"], i["master_address"]) for n, i in insts.items()] == [
        ("pA", "0", ["pa0", "pa1"], "192.0.2.10"), ("pB", "1", ["pb0", "pb1"], "192.0.2.11"),
        ("decode", "2", ["d0", "d1"], "192.0.2.14")]
    assert [planned["hosts"][n]["dp_rank_start"] for n in ("pa0", "pa1", "pb0", "pb1", "d0", "d1")] == [0, 1, 0, 1, 0, 4]
    extra = {"prefill": {"dp_size": 2, "tp_size": 16}, "decode": {"dp_size": 8, "tp_size": 4}}
    for name, engine_id in (("pb1", "1"), ("d1", "2")):
        cfg = kv_config(launches(planned, name)[0])
        assert cfg["engine_id"] == engine_id and cfg["kv_connector_extra_config"] == extra
    assert flags(launches(planned, "pb1")[0]["argv"])["--data-parallel-address"] == "192.0.2.11"
    proxy = planned["proxy"]
    assert [s["host"] for s in proxy["prefillers"]] == ["pa0", "pa1", "pb0", "pb1"]
    assert [(s["host"], s["port"]) for s in proxy["decoders"]] == [(f"d{h}", 6721 + i) for h in range(2) for i in range(4)]


@pytest.mark.parametrize("backend, pspec, want", [
    ("vllm_ascend_example", {}, ["python", "load_balance_proxy_server_example.py", "--port", "8000", "--host", "0.0.0.0",
                                 "--prefiller-hosts", "192.0.2.10", "--prefiller-ports", "6700",
                                 "--decoder-hosts", "192.0.2.11", "192.0.2.11", "--decoder-ports", "6721", "6722"]),
    ("ascend_pd_proxy", {"health_interval": 2, "failure_threshold": 3, "max_retries": 4, "port": 9000,
                         "fallback": "always", "ascend_pd_proxy_bin": "/opt/p/bin/ascend-pd-proxy"},
     ["/opt/p/bin/ascend-pd-proxy", "--port", "9000", "--host", "0.0.0.0", "--prefiller-hosts", "192.0.2.10",
      "--prefiller-ports", "6700", "--decoder-hosts", "192.0.2.11", "192.0.2.11", "--decoder-ports", "6721", "6722",
      "--health-interval", "2", "--failure-threshold", "3", "--max-retries", "4", "--fallback", "always"]),
    ("vllm_router", {"bind": "127.0.0.1", "health_interval": 5, "router_policy": "cache_aware"},
     ["vllm-router", "--vllm-pd-disaggregation", "--prefill", "http://192.0.2.10:6700",
      "--decode", "http://192.0.2.11:6721", "--decode", "http://192.0.2.11:6722", "--host", "127.0.0.1",
      "--port", "8000", "--policy", "cache_aware", "--health-check-endpoint", "/health",
      "--health-check-interval-secs", "5"]),
])
def test_proxy_argv(backend, pspec, want):
    spec = pd_cluster([host("p0", "prefill", api_port=6700)],
                      [host("d0", "decode", tp_size=8, dp_size_local=2, api_port=6721, kv_port=41000)],
                      proxy=dict(pspec, backend=backend))
    proxy = plan(spec)["proxy"]
    assert proxy["argv"] == want
    assert (proxy["host"], proxy["address"], proxy["backend"]) == ("px", "192.0.2.12", backend)
    assert proxy["unset_env"] == ["http_proxy", "https_proxy"]


# --------------------------------------------------------------------------
# KV handshake ports (F5)
# --------------------------------------------------------------------------

def test_kv_handshake_ranges():
    """kv_port + dp_rank * tp + tp_rank: adjacent ranks touch, never overlap."""
    planned = plan(seed_1p1d(kv_port=36000))
    for h in range(4):
        for i, launch in enumerate(launches(planned, f"decode{h}")):
            rank = 4 * h + i
            assert launch["kv_ports"] == [36000 + 4 * rank, 36000 + 4 * rank + 3]
    assert launches(planned, "decode3")[3]["kv_ports"] == [36060, 36063]
    assert [r["kv_ports"] for r in planned["hosts"]["prefill1"]["ranks"]] == [[30016, 30031]]


def f5_cluster(hw: str, kv_port: int, tp: int) -> dict:
    prefill = [host("p0", "prefill", hw=hw, model={}, profile="pd_common", tp_size=tp, dp_size_local=2,
                    kv_port=kv_port)]
    decode = [host("d0", "decode", hw=hw, model={}, profile="pd_common", tp_size=8, kv_port=50000, api_port=7000)]
    return pd_cluster(prefill, decode)


@pytest.mark.parametrize("hw, kv_port, tp, flagged", [
    ("a3", 35996, 2, [("35996-35997", 0), ("35998-35999", 1)]),   # last ports below 36000
    ("a3", 35998, 2, [("35998-35999", 0)]),                        # rank 1 starts at 36000
    ("a3", 36000, 4, []),
    ("a3", 19994, 4, [("19998-20001", 1)]),                        # rank 1 reaches 20000
    ("a3", 19992, 4, []),
    ("a2", 27996, 2, [("27996-27997", 0), ("27998-27999", 1)]),   # A2: 8 NPUs -> [20000, 28000)
    ("a2", 28000, 4, []),
])
def test_f5_warning_inside_random_range(hw, kv_port, tp, flagged):
    planned = plan(f5_cluster(hw, kv_port, tp))
    top = 20000 + HARDWARE[hw]["npus"] * 1000
    assert planned["warnings"] == [
        f"host p0 (prefill): KV handshake ports {ports} of rank {rank} lie inside Mooncake's random port range "
        f"[20000, {top}); raise vllm_kv_port to >= {top} (F5)" for ports, rank in flagged]


# --------------------------------------------------------------------------
# validation: one line per problem, naming host/instance and values
# --------------------------------------------------------------------------

def test_npus_oversubscribed_on_a3_decode():
    errors = rejected(seed_1p1d(dp_size_local=5))
    line = one_line(errors, "host decode0 (decode)")
    assert "vllm_tp_size 4 x vllm_dp_size_local 5 = 20 NPUs > 16 NPUs of hardware Atlas 800 A3" in line
    assert len(errors) == 4 and all("20 NPUs > 16" in e for e in errors)


@pytest.mark.parametrize("keys, needles", [
    ({"hw": "a2", "tp_size": 8, "dp_size_local": 2}, ["8 x vllm_dp_size_local 2 = 16 NPUs > 8 NPUs", "A2"]),
    ({"npu_count": 8}, ["16 x vllm_dp_size_local 1 = 16 NPUs > 8 NPUs"]),
])
def test_npus_oversubscribed(keys, needles):
    errors = rejected(cluster(host("n0", "engine", model="glm5_w4a8", **keys)))
    one_line(errors, "host n0 (engine)", *needles)
    assert len(errors) == 1


@pytest.mark.parametrize("start, needles", [
    (0, ["instance engine: DP rank 0 is assigned to both n0 and n1"]),
    (2, ["instance engine: DP ranks must cover [0, 2) exactly once; missing [1]", "outside the range 2 (on n1)"]),
])
def test_rank_start_errors(start, needles):
    errors = rejected(cluster(host("n0", "engine", model="glm5_w4a8"),
                              host("n1", "engine", model="glm5_w4a8", dp_rank_start=start)))
    one_line(errors, *needles)


@pytest.mark.parametrize("key, value, shown", [
    ("tp_size", 8, "vllm_tp_size differs inside one DP instance (n0=16, n1=8)"),
    ("dp_mode", "internal", "vllm_dp_mode differs inside one DP instance (n0='external', n1='internal')"),
    ("dp_rpc_port", 12999, "vllm_dp_rpc_port differs inside one DP instance (n0=12890, n1=12999)"),
])
def test_instance_not_uniform(key, value, shown):
    errors = rejected(cluster(host("n0", "engine", model="glm5_w4a8"),
                              host("n1", "engine", model="glm5_w4a8", **{key: value})))
    one_line(errors, "instance engine: " + shown)


def test_internal_dp_needs_equal_local_ranks():
    errors = rejected(cluster(host("n0", "engine", dp_mode="internal", tp_size=8, dp_size_local=2),
                              host("n1", "engine", dp_mode="internal", tp_size=8, dp_size_local=1)))
    assert errors == ["instance engine: internal DP needs the same vllm_dp_size_local on every host (n0=2, n1=1)"]


@pytest.mark.parametrize("decode_keys, proxy_on, proxy_port, needles", [
    ({"api_port": 40004, "kv_port": 40000}, None, 8000,
     ["host d0: port 40004 is planned twice (KV handshake port of rank 1; API port of vllm-decode-r0)"]),
    ({}, "d0", 6721, ["host d0: port 6721 is planned twice (API port of vllm-decode-r0; proxy port)"]),
    ({"api_port": 12890, "dp_size_local": 2, "kv_port": 41000}, None, 8000,
     ["host d0: port 12890 is planned twice (DP RPC port of instance decode; API port of vllm-decode-r0)"]),
])
def test_port_collisions_on_a_host(decode_keys, proxy_on, proxy_port, needles):
    keys = {"tp_size": 4, "dp_size_local": 2, "api_port": 6721, "kv_port": 40000}
    keys.update(decode_keys)
    decode = host("d0", "decode", *(["proxy"] if proxy_on else []), **keys)
    proxy_host = [] if proxy_on else [host("px", "proxy")]
    spec = cluster(host("p0", "prefill", api_port=6700, kv_port=30000), decode, *proxy_host,
                   proxy={"port": proxy_port})
    one_line(rejected(spec), *needles)


def test_rpc_port_equals_api_port_on_internal_master():
    errors = rejected(cluster(host("n0", "engine", dp_mode="internal", api_port=12890),
                              host("n1", "engine", dp_mode="internal", api_port=12890)))
    assert errors == ["host n0: port 12890 is planned twice (DP RPC port of instance engine; API port of vllm-engine-r0); "
                      "move one of the base ports (F6)"]


@pytest.mark.parametrize("keys, line", [
    ({"api_port": 70000}, "host n0: API port of vllm-engine-r0 70000 is outside 1-65535"),
    ({"api_port": 0}, "host n0 (engine): vllm_api_port = 0, expected a positive integer"),
    ({"kv_port": "3o000"}, "host n0 (engine): vllm_kv_port = '3o000', expected a positive integer or null"),
    ({"tp_size": 0}, "host n0 (engine): vllm_tp_size = 0, expected a positive integer"),
    ({"dp_mode": "hybrid"}, "host n0 (engine): vllm_dp_mode = 'hybrid', expected one of external, internal"),
])
def test_bad_values(keys, line):
    assert line in rejected(cluster(host("n0", "engine", model="glm5_w4a8", **keys)))


def test_kv_range_past_65535():
    spec = pd_cluster([host("p0", "prefill", kv_port=65530)], [host("d0", "decode", kv_port=40000)])
    errors = rejected(spec)
    one_line(errors, "host p0: KV handshake port of rank 0 65536 is outside 1-65535")
    assert len(errors) == 10 and all(e.startswith("host p0: KV handshake port of rank 0 655") for e in errors)


@pytest.mark.parametrize("role, keys, needle", [
    ("decode", {"env_overrides": {"VLLM_ASCEND_BALANCE_SCHEDULING": "1"}}, "balance scheduling"),
    ("prefill", {"additional_config_overrides": {"enable_balance_scheduling": True}}, "balance scheduling"),
])
def test_f9_balance_scheduling_on_pd(role, keys, needle):
    p_keys, d_keys = (keys, {}) if role == "prefill" else ({}, keys)
    spec = pd_cluster([host("p0", "prefill", **p_keys)], [host("d0", "decode", kv_port=41000, **d_keys)])
    name = "p0" if role == "prefill" else "d0"
    line = one_line(rejected(spec), f"host {name} ({role}): {needle}")
    assert f"set on a {role} node" in line and "F9" in line


def test_f9_balance_scheduling_allowed_without_pd():
    planned = plan(cluster(host("n0", "engine", profile="colocated")))
    assert launches(planned, "n0")[0]["env"]["VLLM_ASCEND_BALANCE_SCHEDULING"] == "1"


def test_f9_recompute_without_pd():
    errors = rejected(cluster(host("n0", "engine", additional_config_overrides={"recompute_scheduler_enable": True})))
    assert errors == ["host n0 (engine): additional_config recompute_scheduler_enable is set without PD; it is for "
                      "decode nodes only (F9); remove it"]


@pytest.mark.parametrize("keys", [
    {"env_overrides": {"ASCEND_A3_ENABLE": "1"}},
    {"profile": deep_merge(resolve_profile(PROFILES, "base"), {"env": {"ASCEND_A3_ENABLE": "1"}})},
])
def test_f17_a3_env_on_a2(keys):
    errors = rejected(cluster(host("n0", "engine", hw="a2", model="glm5_w4a8", tp_size=8, **keys)))
    assert errors == ["host n0 (engine): ASCEND_A3_ENABLE is set but the hardware is Atlas 800 A2; it is only valid "
                      "on A3 and breaks the transport (F17); remove it"]


def test_f17_pd_on_a2_has_no_a3_env():
    spec = pd_cluster([host("p0", "prefill", hw="a2", model="glm5_w4a8", tp_size=8)],
                      [host("d0", "decode", hw="a2", model="glm5_w4a8", tp_size=8, kv_port=41000)])
    assert "ASCEND_A3_ENABLE" not in launches(plan(spec), "d0")[0]["env"]


def test_f10_kv_extra_config_typed_by_hand():
    profile = deep_merge(resolve_profile(PROFILES, "pd_common"),
                         {"kv_transfer": {"extra_config": {"decode": {"dp_size": 4, "tp_size": 4}}}})
    spec = pd_cluster([host("p0", "prefill", profile="pd_common")],
                      [host("d0", "decode", profile=profile, kv_port=41000)])
    errors = rejected(spec)
    assert errors == ["host d0 (decode): kv_transfer.extra_config.decode is typed by hand; the planner derives it "
                      "from the topology (F10); remove it"]


def test_f10_prefill_instances_differ():
    prefill = [host("pa0", "prefill", instance="pA"), host("pa1", "prefill", instance="pA"),
               host("pb0", "prefill", instance="pB")]
    errors = rejected(pd_cluster(prefill, [host("d0", "decode", kv_port=41000)]))
    one_line(errors, "group prefill: instances have different shapes (pB: dp 1 tp 16, pA: dp 2 tp 16)", "F10")


@pytest.mark.parametrize("nodes, hw, model, tp, profile, need", [
    (1, "a2", "glm5_w8a8", 8, "single_a2_w4a8", "needs ~90.0 GiB per NPU (weights 90.0) but Atlas 800 A2 gives 60.8 GiB"),
    (1, "a2", "glm5_w4a8", 8, "single_a2_w4a8", None),
    (1, "a3", "glm5_bf16", 16, "dp_a3_bf16", "needs ~86.9 GiB per NPU (weights 86.9) but Atlas 800 A3 gives 60.8 GiB"),
    (2, "a3", "glm5_bf16", 16, "dp_a3_bf16", None),
])
def test_f13_hbm_capacity(nodes, hw, model, tp, profile, need):
    spec = cluster(*[host(f"n{i}", "engine", hw=hw, model=model, tp_size=tp, profile=profile, dp_mode="internal")
                     for i in range(nodes)])
    if need is None:
        assert plan(spec)["instances"]["engine"]["dp_size"] == nodes
    else:
        line = one_line(rejected(spec), "instance engine (n0...)", need)
        assert f"dp {nodes} x tp {tp}" in line and "(F13/F14)" in line


def test_f14_pd_overhead():
    """w4a8 tp 8 on A2 at 0.9 utilization: 50 GiB fits 57.6 alone, 60 GiB with the PD overhead does not."""
    keys = {"hw": "a2", "model": "glm5_w4a8", "tp_size": 8, "serve_overrides": {"gpu-memory-utilization": 0.9}}
    assert plan(cluster(host("n0", "engine", **keys)))["mode"] == "single"
    errors = rejected(pd_cluster([host("p0", "prefill", **keys)], [host("d0", "decode", kv_port=41000, **keys)]))
    for inst, name in (("prefill", "p0"), ("decode", "d0")):
        one_line(errors, f"instance {inst} ({name}...)", "needs ~60.0 GiB per NPU (weights 50.0 + PD overhead 10)",
                 "gives 57.6 GiB (64 GiB x gpu-memory-utilization 0.9)")


@pytest.mark.parametrize("require_nic, failing", [(["n0"], None), (["n1"], "n1"), (None, "n1")])
def test_missing_nic_only_for_required_hosts(require_nic, failing):
    spec = cluster(host("n0", "engine", model="glm5_w4a8"), host("n1", "engine", model="glm5_w4a8", nic=None),
                   require_nic=require_nic)
    if failing is None:
        assert launches(plan(spec), "n1")[0]["env"]["GLOO_SOCKET_IFNAME"] == ""
    else:
        assert rejected(spec) == [f"host {failing} (engine): no NIC for HCCL/GLOO/TP sockets; set vllm_nic_name, or "
                                  f"deploy (the plan role derives it from the address 192.0.2.11) (F15)"]


@pytest.mark.parametrize("hosts, line", [
    ([("p0", ["prefill"]), ("d0", ["decode"])], "group proxy: PD needs exactly one proxy host, found 0 (none)"),
    ([("p0", ["prefill"]), ("d0", ["decode"]), ("x0", ["proxy"]), ("x1", ["proxy"])],
     "group proxy: PD needs exactly one proxy host, found 2 (x0, x1)"),
    ([("p0", ["prefill", "decode"])],
     "host p0: in groups prefill, decode; a host runs exactly one engine role (prefill, decode or engine)"),
    ([("p0", ["prefill"]), ("d0", ["decode"]), ("e0", ["engine"]), ("x0", ["proxy"])],
     "inventory: group engine cannot be combined with prefill/decode; use engine for single-node/DP, "
     "prefill+decode for PD"),
    ([("p0", ["prefill"]), ("x0", ["proxy"])],
     "inventory: PD disaggregation needs hosts in both prefill and decode; only prefill has hosts"),
])
def test_group_errors(hosts, line):
    specs = [host(n, *g, api_port=6700 + i, kv_port=40000 + 1000 * i) for i, (n, g) in enumerate(hosts)]
    assert line in rejected(cluster(*specs))


def test_unknown_proxy_backend():
    spec = pd_cluster([host("p0", "prefill")], [host("d0", "decode", kv_port=41000)], proxy={"backend": "nginx"})
    assert rejected(spec) == ["host px (proxy): pd_proxy_backend 'nginx' unknown; use vllm_ascend_example, "
                              "ascend_pd_proxy or vllm_router"]


@pytest.mark.parametrize("value", [False, "sometimes"])
def test_unknown_proxy_fallback(value):
    """A bare YAML off arrives as False: the error says to quote it."""
    spec = pd_cluster([host("p0", "prefill")], [host("d0", "decode", kv_port=41000)], proxy={"fallback": value})
    assert rejected(spec) == [f"host px (proxy): vllm_proxy_fallback {value!r} unknown; use drained, always or "
                              "'off' (quoted: YAML reads a bare off as false)"]


@pytest.mark.parametrize("keys, line", [
    ({"env_overrides": {"HCCL_IF_IP": "10.0.0.1"}}, "host n0 (engine): vllm_env_overrides sets HCCL_IF_IP"),
    ({"env_overrides": {"ASCEND_RT_VISIBLE_DEVICES": "0"}}, "host n0 (engine): vllm_env_overrides sets ASCEND_RT_VISIBLE_DEVICES"),
    ({"serve_overrides": {"port": 9000}}, "host n0 (engine): vllm_serve_overrides sets --port"),
    ({"serve_overrides": {"tensor-parallel-size": 8}}, "host n0 (engine): vllm_serve_overrides sets --tensor-parallel-size"),
    ({"profile": {"serve": {"data-parallel-size": 2}}}, "host n0 (engine): deployment profile sets --data-parallel-size"),
    ({"profile": {"env": {"GLOO_SOCKET_IFNAME": "eth9"}}}, "host n0 (engine): deployment profile env sets GLOO_SOCKET_IFNAME"),
])
def test_planner_owned_keys_rejected(keys, line):
    errors = rejected(cluster(host("n0", "engine", model="glm5_w4a8", **keys)))
    assert len(errors) == 1 and errors[0].startswith(line), errors


def test_instance_level_requirements():
    errors = rejected(pd_cluster([host("p0", "prefill", dp_size_local=1, kv_port=None)],
                                 [host("d0", "decode", tp_size=8, dp_size_local=2, dp_rpc_port=None, dp_mode="internal")]))
    assert errors == ["instance prefill: PD needs vllm_kv_port (Mooncake handshake base port)",
                      "instance decode: data parallel size 2 needs vllm_dp_rpc_port",
                      "instance decode: PD instances use external DP (one vllm serve per rank, section 5.3); "
                      "set vllm_dp_mode: external"]


@pytest.mark.parametrize("profiles, name, line", [
    ({"a": {"extends": ["b"]}, "b": {"extends": ["c"]}, "c": {"extends": ["a"]}}, "a",
     "deployment profile 'a': 'extends' loops through a -> b -> c -> a"),
    ({"a": {"extends": ["a"]}}, "a", "deployment profile 'a': 'extends' loops through a -> a"),
    ({"a": {"extends": ["zz"]}, "b": {}}, "a", "deployment profile 'zz' is not defined; known: a, b"),
    ({"a": {}}, "nope", "deployment profile 'nope' is not defined; known: a"),
])
def test_resolve_profile_errors(profiles, name, line):
    with pytest.raises(PlanError) as exc:
        resolve_profile(profiles, name)
    assert exc.value.errors == [line]


def test_resolve_profile_extends_in_order_and_null_removes():
    got = resolve_profile(PROFILES, "pd_a3_w8a8_decode")
    assert got["env"]["HCCL_BUFFSIZE"] == "256" and got["env"]["HCCL_OP_EXPANSION_MODE"] == "AIV"
    assert got["serve"]["compilation-config"]["cudagraph_capture_sizes"] == [4, 8, 12, 16, 20, 24, 28, 32]
    assert "compilation-config" not in resolve_profile(PROFILES, "pd_common")["serve"]
    assert "extends" not in got


# --------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------

def test_env_override_null_removes_and_values_are_strings():
    overrides = {"OMP_NUM_THREADS": None, "HCCL_BUFFSIZE": 512, "MY_FLAG": True}
    planned = plan(cluster(host("n0", "engine", env_overrides=overrides)))
    env = launches(planned, "n0")[0]["env"]
    assert "OMP_NUM_THREADS" not in env and env["HCCL_BUFFSIZE"] == "512" and env["MY_FLAG"] == "true"
    assert env["HCCL_OP_EXPANSION_MODE"] == "AIV"


def test_serve_override_replaces_and_null_drops():
    planned = plan(cluster(host("n0", "engine", serve_overrides={
        "max-num-batched-tokens": 8192, "served-model-name": "glm-5-prod", "trust-remote-code": None,
        "speculative-config": {"num_speculative_tokens": 1, "method": "deepseek_mtp", "enforce_eager": True}})))
    got = flags(launches(planned, "n0")[0]["argv"])
    assert got["--max-num-batched-tokens"] == "8192" and got["--served-model-name"] == "glm-5-prod"
    assert "--trust-remote-code" not in got and got["--enable-expert-parallel"] is True
    assert got["--speculative-config"] == {"num_speculative_tokens": 1, "method": "deepseek_mtp", "enforce_eager": True}


def test_additional_config_deep_merge_with_null_delete():
    planned = plan(cluster(host("n0", "engine", profile="single_a3_w8a8", additional_config_overrides={
        "fuse_muls_add": None, "ascend_compilation_config": {"enable_npugraph_ex": None, "fuse_norm": True},
        "enable_shared_expert_dp": True})))
    got = flags(launches(planned, "n0")[0]["argv"])
    assert got["--additional-config"] == {"multistream_overlap_shared_expert": True,
                                          "ascend_compilation_config": {"fuse_norm": True},
                                          "enable_shared_expert_dp": True}


# --------------------------------------------------------------------------
# properties (hypothesis)
# --------------------------------------------------------------------------

NPUS = {"a2": 8, "a3": 16}


@st.composite
def instance_shapes(draw, pd: bool) -> dict:
    """hardware, tp, dp mode and local ranks per host of one DP instance (tp * local <= npus)."""
    hw = draw(st.sampled_from(sorted(NPUS)))
    tp = draw(st.sampled_from([t for t in (1, 2, 4, 8, 16) if t <= NPUS[hw]]))
    nhosts = draw(st.integers(1, 6))
    mode = "external" if pd else draw(st.sampled_from(["external", "internal"]))
    local = st.integers(1, NPUS[hw] // tp)
    locals_ = [draw(local)] * nhosts if mode == "internal" else [draw(local) for _host in range(nhosts)]
    return {"hw": hw, "tp": tp, "mode": mode, "locals": locals_}


@st.composite
def valid_topologies(draw) -> tuple[dict, dict]:
    """(planner spec, truth): 1-4 instances per role, 1-6 hosts each, port bases that cannot collide."""
    pd = draw(st.booleans())
    roles = ("prefill", "decode") if pd else ("engine",)
    hosts: list[dict] = []
    truth: dict[str, dict] = {}
    keys: list[int] = []
    for role in roles:
        shape = draw(instance_shapes(pd))  # PD: one shape per role (F10)
        for k in range(draw(st.integers(1, 4))):
            if not pd and k:
                shape = draw(instance_shapes(pd))
            inst = f"{role}{k}"
            rpc, kv = draw(st.integers(10000, 19000)), draw(st.integers(40000, 60000))
            start = 0
            members = []
            for j, local in enumerate(shape["locals"]):
                name = f"{inst}h{j}"
                explicit = draw(st.booleans())
                hosts.append(host(name, role, hw=shape["hw"], model={}, profile="pd_common" if pd else "base",
                                  instance=inst, tp_size=shape["tp"], dp_size_local=local,
                                  dp_rank_start=start if explicit else None, dp_mode=shape["mode"],
                                  api_port=draw(st.integers(1024, 9000)), dp_rpc_port=rpc, kv_port=kv))
                members.append((name, start, local))
                start += local
            truth[inst] = {"tp": shape["tp"], "dp": start, "members": members, "npus": NPUS[shape["hw"]]}
            # Interleave instances in the inventory, keeping each instance's own host order.
            keys += sorted(draw(st.lists(st.integers(0, 99), min_size=len(members), max_size=len(members))))
    hosts = [h for _key, h in sorted(zip(keys, hosts), key=lambda pair: pair[0])]
    proxy = None
    if pd:
        on = draw(st.sampled_from([None] + [h["name"] for h in hosts]))
        if on is None:
            hosts.append(host("px", "proxy"))
        else:
            next(h for h in hosts if h["name"] == on)["groups"].append("proxy")
        proxy = {"port": draw(st.integers(9100, 9900))}
    return cluster(*[dict(h, address=f"10.{i // 250}.{i % 250}.1") for i, h in enumerate(hosts)], proxy=proxy), truth


PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(valid_topologies())
def test_valid_topologies_plan_consistently(case):
    spec, truth = case
    planned = plan(spec)
    assert list(planned["instances"]) == sorted(truth, key=lambda n: (n.startswith("decode"), [
        h["name"] for h in spec["hosts"]].index(truth[n]["members"][0][0])))
    for inst, want in truth.items():
        info = planned["instances"][inst]
        assert (info["dp_size"], info["tp_size"]) == (want["dp"], want["tp"])
        ranks = sorted(r["rank"] for name, _start, _local in want["members"] for r in planned["hosts"][name]["ranks"])
        assert ranks == list(range(want["dp"]))
        for name, start, local in want["members"]:
            assert planned["hosts"][name]["dp_rank_start"] == start
    for name, planned_host in planned["hosts"].items():
        inst = planned["instances"][planned_host["instance"]]
        ports: list[int] = []
        devices: list[int] = []
        if inst["master"] == name and inst["dp_size"] > 1:
            ports.append(inst["dp_rpc_port"])
        for launch in planned_host["launches"]:
            ports += [launch["api_port"]] if launch["api_port"] is not None else []
            ports += list(range(launch["kv_ports"][0], launch["kv_ports"][1] + 1)) if launch["kv_ports"] else []
            devices += launch["devices"]
            if "ASCEND_RT_VISIBLE_DEVICES" in launch["env"]:
                assert launch["env"]["ASCEND_RT_VISIBLE_DEVICES"] == ",".join(map(str, launch["devices"]))
            got = flags(launch["argv"])
            assert got["--data-parallel-size"] == str(inst["dp_size"])
            assert got["--tensor-parallel-size"] == str(inst["tp_size"])
        if planned["proxy"] and planned["proxy"]["host"] == name:
            ports.append(planned["proxy"]["port"])
        assert len(ports) == len(set(ports)), (name, ports)
        assert len(devices) == len(set(devices)) and all(0 <= d < planned_host["npus"] for d in devices)
    if planned["proxy"]:
        servers = [s for i in planned["instances"].values() for s in i["api_servers"]]
        assert len(planned["proxy"]["prefillers"]) + len(planned["proxy"]["decoders"]) == len(servers)


def inject(spec: dict, truth: dict, fault: str, data) -> tuple[str, list[str]]:
    """Break one host of a valid spec; return its name and the line prefixes every error may start with."""
    by_name = {h["name"]: h for h in spec["hosts"]}
    pd = any(n.startswith("prefill") for n in truth)
    if fault == "npus":
        name = data.draw(st.sampled_from([m[0] for t in truth.values() for m in t["members"]]))
        victim = by_name[name]
        assume(victim["tp_size"] * victim["dp_size_local"] >= 2)
        victim["npu_count"] = victim["tp_size"] * victim["dp_size_local"] - 1
        return name, [f"host {name} ("]
    if fault == "port":
        if pd:
            name = data.draw(st.sampled_from([m[0] for t in truth.values() for m in t["members"]]))
            start = next(m[1] for t in truth.values() for m in t["members"] if m[0] == name)
            by_name[name]["api_port"] = by_name[name]["kv_port"] + start * by_name[name]["tp_size"]
        else:
            multi = [t for t in truth.values() if t["dp"] > 1]
            assume(multi)
            inst = data.draw(st.sampled_from(multi))
            name = inst["members"][0][0]
            for member, _start, _local in inst["members"]:
                by_name[member]["dp_rpc_port"] = by_name[name]["api_port"]
        return name, [f"host {name}: port "]
    multi = [(n, t) for n, t in truth.items() if len(t["members"]) > 1]
    assume(multi)
    inst, want = data.draw(st.sampled_from(multi))
    j = data.draw(st.integers(1, len(want["members"]) - 1))
    for member, start, _local in want["members"]:
        by_name[member]["dp_rank_start"] = start
    name = want["members"][j][0]
    by_name[name]["dp_rank_start"] = want["members"][j - 1][1]
    return name, [f"instance {inst}: "]


@PROPERTY
@given(valid_topologies(), st.sampled_from(["npus", "port", "rank"]), st.data())
def test_invalid_topologies_name_the_faulty_host(case, fault, data):
    spec, truth = case
    name, prefixes = inject(spec, truth, fault, data)
    errors = rejected(spec)
    assert all(any(e.startswith(p) for p in prefixes) for e in errors), (name, errors)
    assert any(name in e for e in errors), (name, errors)
    if fault == "npus":
        assert len(errors) == 1 and " NPUs > " in errors[0]
    if fault == "rank":
        assert any("is assigned to both" in e and e.endswith(f" and {name}; fix vllm_dp_rank_start") for e in errors)
