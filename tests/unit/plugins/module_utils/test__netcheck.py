"""Unit tests of the pure preflight/hccn_verify helpers against a real plan of the sim 1P1D shape."""

from __future__ import annotations

import json

import pytest

from ansible_collections.ascend_ops.vllm.plugins.module_utils import _netcheck as nc
from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import plan

A3 = {"key": "a3", "name": "Atlas 800 A3", "npus": 16, "hbm_gib": 64, "pd_overhead_gib": 10,
      "env": {"pd": {}, "colocated": {}}, "forbidden_env": []}
MODEL = {"name": "m", "path": "/m", "weights_gib": 1, "dense_gib": 0}


def host(name, group, address, tp, local, api, rpc, kv):
    return {"name": name, "groups": [group], "address": address, "nic": "eth0", "hardware": A3, "npu_count": 4,
            "tp_size": tp, "dp_size_local": local, "dp_mode": "external", "api_port": api, "dp_rpc_port": rpc,
            "kv_port": kv, "model": MODEL, "model_path": "/m",
            "profile": {"serve": {}, "env": {}, "additional_config": {},
                        "kv_transfer": {"kv_connector": "MooncakeConnectorV1",
                                        "kv_connector_extra_config": {"use_ascend_direct": True}}}}


@pytest.fixture(scope="module")
def pd_plan():
    hosts = [host("p0", "prefill", "10.0.0.11", 4, 1, 6700, 10521, 30000),
             host("p1", "prefill", "10.0.0.12", 4, 1, 6700, 10521, 30000),
             host("d0", "decode", "10.0.0.21", 1, 4, 6721, 10523, 30100),
             host("d1", "decode", "10.0.0.22", 1, 4, 6721, 10523, 30100),
             {"name": "px", "groups": ["proxy"], "address": "10.0.0.30", "hardware": A3, "model": MODEL}]
    return plan({"hosts": hosts, "proxy": {"backend": "ascend_pd_proxy", "port": 8000}})


def test_planned_ports_of_the_prefill_master(pd_plan):
    ports = nc.planned_ports(pd_plan, "p0")
    assert [p["port"] for p in ports] == [10521, 6700, 30000, 30001, 30002, 30003]
    assert ports[0]["why"] == "DP RPC port of instance prefill"


def test_planned_ports_of_a_decode_worker_and_the_proxy(pd_plan):
    assert [p["port"] for p in nc.planned_ports(pd_plan, "d1")] == [6721, 30104, 6722, 30105, 6723, 30106, 6724, 30107]
    assert nc.planned_ports(pd_plan, "px") == [{"port": 8000, "why": "proxy port"}]
    assert nc.planned_ports(pd_plan, "nobody") == []


def test_reach_checks_cover_dp_master_kv_and_api(pd_plan):
    checks = nc.reach_checks(pd_plan)
    keys = {(c["src"], c["dst"], c["port"]) for c in checks}
    assert ("p1", "p0", 10521) in keys and ("d1", "d0", 10523) in keys
    assert {("d0", "p1", p) for p in range(30004, 30008)} <= keys
    assert ("px", "d1", 6724) in keys and ("px", "p0", 6700) in keys
    assert not any(c["src"] == c["dst"] for c in checks)
    assert not any(c["src"].startswith("p") and c["port"] >= 30000 for c in checks)  # prefill dials no KV port
    assert len(keys) == len(checks)
    assert nc.listen_ports(checks, "p0") == [6700, 10521, 30000, 30001, 30002, 30003]
    assert nc.reach_targets(checks, "p1") == [{"address": "10.0.0.11", "port": 10521}]


@pytest.mark.parametrize("extra,expected", [({"use_ascend_direct": True}, True), ({"use_ascend_direct": False}, False),
                                            ({}, False)])
def test_uses_ascend_direct(extra, expected):
    config = json.dumps({"kv_connector": "MooncakeConnectorV1", "kv_connector_extra_config": extra})
    launch = {"argv": ["vllm", "serve", "/m", "--kv-transfer-config", config]}
    assert nc.uses_ascend_direct({"launches": [launch]}) is expected
    assert nc.uses_ascend_direct({"launches": [{"argv": ["vllm", "serve"]}]}) is False


def nodes(count, npus=4, roles=None):
    return [{"host": f"n{i}", "role": (roles or {}).get(i, ""),
             "devices": [{"device": d, "ip": f"10.1.{i}.{d + 10}"} for d in range(npus)]} for i in range(count)]


def test_same_index_pairs_each_npu_with_the_same_npu_of_every_other_node():
    pairs = nc.ping_pairs(nodes(3))
    assert len(pairs) == 3 * 4 * 2
    assert all(p["device"] == p["peer_device"] and p["src"] != p["dst"] for p in pairs)
    assert {"src": "n0", "device": 2, "dst": "n2", "peer_device": 2, "address": "10.1.2.12"} in pairs


def test_full_mesh_pairs_every_npu_with_every_remote_npu():
    pairs = nc.ping_pairs(nodes(3), "full")
    assert len(pairs) == 3 * 4 * 2 * 4
    assert len({(p["src"], p["device"], p["address"]) for p in pairs}) == len(pairs)


@pytest.mark.parametrize("count,k", [(10, 2), (17, 4), (3, 5)])
def test_sampled_is_bounded_deterministic_and_spreads_over_the_cluster(count, k):
    pairs = nc.ping_pairs(nodes(count, npus=8), "sampled", k)
    assert pairs == nc.ping_pairs(nodes(count, npus=8), "sampled", k)
    per_npu = {}
    for p in pairs:
        per_npu.setdefault((p["src"], p["device"]), set()).add(p["dst"])
    assert max(len(v) for v in per_npu.values()) <= min(k, count - 1)
    reached = {(p["src"], p["dst"]) for p in pairs}
    assert len({d for s, d in reached if s == "n0"}) == min(count - 1, 8 * k)


def test_sampled_always_covers_every_prefill_decode_node_pair():
    roles = {0: "prefill", 1: "prefill"} | {i: "decode" for i in range(2, 12)}
    pairs = nc.ping_pairs(nodes(12, npus=1, roles=roles), "sampled", 1)
    covered = {(p["src"], p["dst"]) for p in pairs}
    for p in ("n0", "n1"):
        for d in (f"n{i}" for i in range(2, 12)):
            assert (p, d) in covered and (d, p) in covered


def test_devices_without_ip_are_left_out_and_bad_options_raise():
    data = nodes(2)
    data[1]["devices"][3]["ip"] = None
    assert not any(p["device"] == 3 for p in nc.ping_pairs(data))
    with pytest.raises(ValueError, match="mesh 'ring'"):
        nc.ping_pairs(data, "ring")
    with pytest.raises(ValueError, match="max_pairs_per_npu 0"):
        nc.ping_pairs(data, "sampled", 0)


def facts(ips, link="UP", tls=0, conf=True):
    devices = [{"device": i, "link": link if i == 0 else "UP", "net_health": "Success",
                "ip": {"ipaddr": ip, "netmask": "255.255.0.0"} if ip else None,
                "tls": {"dev_id": i, "switch": tls if i == 1 else 0, "preconfigured": 1, "alarm_threshold_days": 60}}
               for i, ip in enumerate(ips)]
    return {"devices": devices, "hccn_conf_present": conf,
            "hccn_conf": {str(i): {"address": ip} for i, ip in enumerate(ips) if ip} if conf else {}}


def failed(rows):
    return [(r["node"], r["npu"], r["check"], r["value"]) for r in rows if r["status"] == "FAIL"]


def test_clean_nodes_give_only_ok_rows_with_pings():
    pairs = [{"src": "a", "device": 0, "dst": "b", "peer_device": 0, "address": "10.0.1.1"}]
    ping = {"a": {"results": [{"device": 0, "address": "10.0.1.1", "sent": 3, "received": 3, "ok": True}]},
            "b": {"skipped": True}}
    rows = nc.hccn_rows({"a": facts(["10.0.0.1", "10.0.0.2"]), "b": facts(["10.0.1.1", "10.0.1.2"])}, pairs, ping)
    assert failed(rows) == []
    assert len(rows) == 2 * 2 * 5 + 1
    assert rows[-1]["check"] == "ping b/npu0 10.0.1.1" and rows[-1]["value"] == "3/3 received"


def test_down_link_tls_mismatch_duplicate_ip_and_missing_conf_fail_by_name():
    rows = nc.hccn_rows({"a": facts(["10.0.0.1", "10.0.0.2"], link="DOWN"),
                         "b": facts(["10.0.0.2", None], tls=1, conf=False),
                         "c": facts(["10.0.2.1", "10.0.2.2"])}, [], {})
    assert failed(rows) == [
        ("a", "0", "link", "DOWN"),
        ("a", "1", "ip", "10.0.0.2"),
        ("b", "-", "hccn.conf", "missing"),
        ("b", "0", "ip", "10.0.0.2"),
        ("b", "1", "ip", "none"),
        ("b", "1", "tls switch", "1"),
    ]
    fixes = {r["check"]: r["fix"] for r in rows if r["status"] == "FAIL"}
    assert "hccn_tool -i 1 -tls -s enable 0" in fixes["tls switch"]
    assert "also on b/npu0" in next(r["fix"] for r in rows if r["node"] == "a" and r["npu"] == "1" and r["check"] == "ip")


def test_conf_address_mismatch_and_lost_pings_fail():
    bad = facts(["10.0.0.1"])
    bad["hccn_conf"]["0"]["address"] = "10.0.0.9"
    pairs = [{"src": "a", "device": 0, "dst": "b", "peer_device": 0, "address": "10.0.1.1"}]
    ping = {"a": {"results": [{"device": 0, "address": "10.0.1.1", "sent": 3, "received": 1, "ok": False}]}}
    rows = nc.hccn_rows({"a": bad, "b": facts(["10.0.1.1"])}, pairs, ping)
    assert failed(rows) == [("a", "0", "hccn.conf address", "10.0.0.9"), ("a", "0", "ping b/npu0 10.0.1.1", "1/3 received")]
    with pytest.raises(ValueError, match="1 ping pairs but 0 ping results"):
        nc.hccn_rows({"a": bad}, pairs, {"a": {"results": []}})


def test_table_puts_failures_first_and_counts_them():
    rows = [nc._row("b", 1, "link", "UP", "UP", True, "F19", ""), nc._row("a", 10, "link", "UP", "UP", True, "F19", ""),
            nc._row("a", 2, "link", "UP", "UP", True, "F19", ""), nc._row("c", 3, "tls switch", 1, 0, False, "F20", "x")]
    lines = nc.format_table(rows).splitlines()
    assert lines[0].split() == ["NODE", "NPU", "CHECK", "VALUE", "EXPECTED", "STATUS"]
    assert [ln.split()[:2] for ln in lines[1:5]] == [["c", "3"], ["a", "2"], ["a", "10"], ["b", "1"]]
    assert lines[1].endswith("FAIL") and lines[-1] == "4 checks, 1 failed"
    assert len({ln.index("STATUS") if "STATUS" in ln else ln.rindex(ln.split()[-1]) for ln in lines[:5]}) == 1
    assert nc.row_failures(rows) == [{"host": "c", "check": "NPU 3 tls switch", "f": "F20", "seen": "1",
                                      "expected": "0", "fix": "x"}]


PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1A2B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
   1: 0100007F:1A2C 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1
   2: 0100007F:1A2B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0
"""


def test_proc_net_tcp_lists_listeners_only():
    assert nc.parse_proc_net_tcp(PROC_TCP) == {0x1A2B: [4242, 4444]}
    assert nc.parse_proc_net_tcp("") == {}


@pytest.mark.parametrize("text,unit", [
    ("0::/system.slice/vllm-decode-r0.service\n", "vllm-decode-r0.service"),
    ("9:name=systemd:/user.slice/user-0.slice/session-3.scope\n8:pids:/\n0::/\n", "session-3.scope"),
    ("0::/\n", None),
])
def test_unit_of_cgroup(text, unit):
    assert nc.unit_of_cgroup(text) == unit


@pytest.mark.parametrize("low,high", [("8.2.RC1", "8.3.RC1"), ("8.3.RC1", "8.3.RC2"), ("8.3.RC2", "8.3.0"),
                                      ("8.3.0", "8.3.1"), ("8.3.1", "9.0.RC1"), ("8.5.0", "8.10.RC1")])
def test_cann_versions_order(low, high):
    assert nc.cann_version_key(low) < nc.cann_version_key(high)


def test_cann_version_cfg_and_bad_versions():
    assert nc.parse_cann_version_cfg("# x\nversion=8.3.RC1\nruntime_running_version=[8.3.RC1:8.3.RC1]\n") == "8.3.RC1"
    with pytest.raises(ValueError, match="no 'version=' line"):
        nc.parse_cann_version_cfg("runtime=1\n")
    with pytest.raises(ValueError, match="CANN version 'latest'"):
        nc.cann_version_key("latest")


def test_shard_count_and_timeout_rule():
    index = {"weight_map": {"a": "model-00001-of-00003.safetensors", "b": "model-00001-of-00003.safetensors",
                            "c": "model-00002-of-00003.safetensors", "d": "model-00003-of-00003.safetensors"}}
    assert nc.index_shard_count(json.dumps(index)) == 3
    with pytest.raises(ValueError, match="no weight_map"):
        nc.index_shard_count("{}")
    assert nc.engine_timeout_needed(160, 300, 5) == 1100
    assert nc.engine_timeout_needed(2, 300, 5) <= 600
