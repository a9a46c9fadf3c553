# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers of the preflight and hccn_verify roles. Stdlib only, no Ansible imports.

- which ports a host binds and which host pairs talk over them, read from the plan (F6, F18);
- which NPU pairs ping each other (F12) and the rows of the network report (F19, F20);
- listening sockets from /proc/net/tcp and their owners (F6);
- CANN version order (F11) and the engine-ready timeout rule (F8).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Tuple

TABLE_COLUMNS = ("node", "npu", "check", "value", "expected", "status")
_TCP_LISTEN = "0A"


# ---------------------------------------------------------------- plan -> ports and pairs

def planned_ports(plan: Dict[str, Any], host: str) -> List[Dict[str, Any]]:
    """Every port the plan makes ``host`` bind: DP RPC (master), API, KV handshake, proxy."""
    ports: List[Dict[str, Any]] = []
    for inst in plan.get("instances", {}).values():
        if inst["master"] == host and inst["dp_size"] > 1 and inst.get("dp_rpc_port"):
            ports.append({"port": int(inst["dp_rpc_port"]), "why": f"DP RPC port of instance {inst['name']}"})
    for launch in plan.get("hosts", {}).get(host, {}).get("launches", []):
        if launch.get("api_port") is not None:
            ports.append({"port": int(launch["api_port"]), "why": f"API port of {launch['name']}"})
        if launch.get("kv_ports"):
            low, high = launch["kv_ports"]
            ports += [{"port": p, "why": f"KV handshake port of {launch['name']}"} for p in range(low, high + 1)]
    proxy = plan.get("proxy")
    if proxy and proxy["host"] == host:
        ports.append({"port": int(proxy["port"]), "why": "proxy port"})
    return ports


def reach_checks(plan: Dict[str, Any]) -> List[Dict[str, Any]]:
    """TCP connections the deployment makes between hosts: (src, dst, address, port, why), deduplicated.

    Ranks -> their DP master RPC port; decode hosts -> every prefill KV handshake port;
    the proxy -> every API server.
    """
    checks: List[Dict[str, Any]] = []
    instances = plan.get("instances", {})
    hosts = plan.get("hosts", {})

    def add(src: str, dst: str, address: str, port: int, why: str) -> None:
        if src != dst:
            checks.append({"src": src, "dst": dst, "address": address, "port": int(port), "why": why})

    for inst in instances.values():
        if inst["dp_size"] > 1 and inst.get("dp_rpc_port"):
            for member in inst["hosts"]:
                add(member, inst["master"], inst["master_address"], inst["dp_rpc_port"],
                    f"DP master RPC port of instance {inst['name']}")
    decode_hosts = [n for n, h in hosts.items() if h["role"] == "decode"]
    for name, host in hosts.items():
        if host["role"] != "prefill":
            continue
        for launch in host["launches"]:
            low, high = launch.get("kv_ports") or (1, 0)
            for port in range(low, high + 1):
                for decode in decode_hosts:
                    add(decode, name, host["address"], port, f"KV handshake port of {launch['name']}")
    proxy = plan.get("proxy")
    if proxy:
        for server in proxy.get("prefillers", []) + proxy.get("decoders", []):
            add(proxy["host"], server["host"], server["address"], server["port"], f"API port of {server['unit']}")
    unique = {(c["src"], c["address"], c["port"]): c for c in checks}
    return list(unique.values())


def listen_ports(checks: Iterable[Dict[str, Any]], host: str) -> List[int]:
    """Ports ``host`` must accept connections on for the reachability checks."""
    return sorted({c["port"] for c in checks if c["dst"] == host})


def reach_targets(checks: Iterable[Dict[str, Any]], host: str) -> List[Dict[str, Any]]:
    """The port_probe ``targets`` of ``host``: {address, port} of its own checks, in order."""
    return [{"address": c["address"], "port": c["port"]} for c in checks if c["src"] == host]


# ---------------------------------------------------------------- NPU ping pairs

def _peer_order(nodes: List[Dict[str, Any]], src_index: int) -> List[int]:
    """Other node indexes in ring order starting after the source node."""
    count = len(nodes)
    return [(src_index + step) % count for step in range(1, count)]


def _pair(src: Dict[str, Any], device: int, dst: Dict[str, Any], peer: Dict[str, Any]) -> Dict[str, Any]:
    return {"src": src["host"], "device": device, "dst": dst["host"], "peer_device": peer["device"],
            "address": peer["ip"]}


def ping_pairs(nodes: List[Dict[str, Any]], mesh: str = "same_index", max_pairs_per_npu: int = 4) -> List[Dict[str, Any]]:
    """Device ping pairs between nodes.

    ``nodes``: [{"host", "role", "devices": [{"device", "ip"}]}], in a stable order; devices without an IP
    are neither sources nor targets. ``mesh``: ``same_index`` (NPU i -> NPU i of every other node),
    ``full`` (every NPU -> every NPU of every other node) or ``sampled`` (NPU i -> NPU i of at most
    ``max_pairs_per_npu`` other nodes, ring-rotated by i so the NPUs of a node spread over the cluster).
    In every mode each ordered prefill/decode node pair gets at least one pair (F12).
    """
    if mesh not in ("same_index", "full", "sampled"):
        raise ValueError(f"mesh {mesh!r}: use same_index, full or sampled")
    if max_pairs_per_npu < 1:
        raise ValueError(f"max_pairs_per_npu {max_pairs_per_npu}: must be >= 1")
    usable = [dict(n, devices=[d for d in n["devices"] if d.get("ip")]) for n in nodes]
    pairs: List[Dict[str, Any]] = []
    for index, src in enumerate(usable):
        order = _peer_order(usable, index)
        for position, dev in enumerate(src["devices"]):
            if mesh == "sampled" and order:
                shift = (position * max_pairs_per_npu) % len(order)
                chosen = (order[shift:] + order[:shift])[:max_pairs_per_npu]
            else:
                chosen = order
            for dst_index in chosen:
                dst = usable[dst_index]
                peers = dst["devices"] if mesh == "full" else [p for p in dst["devices"] if p["device"] == dev["device"]]
                pairs += [_pair(src, dev["device"], dst, peer) for peer in peers]
    covered = {(p["src"], p["dst"]) for p in pairs}
    for src in usable:
        for dst in usable:
            cross = {src.get("role"), dst.get("role")} == {"prefill", "decode"}
            if cross and (src["host"], dst["host"]) not in covered and src["devices"] and dst["devices"]:
                pairs.append(_pair(src, src["devices"][0]["device"], dst, dst["devices"][0]))
    return pairs


def ping_nodes(hosts: List[str], facts: List[Dict[str, Any]], plan: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """ping_pairs() input from the hosts, their hccn_facts results (same order) and the plan (roles)."""
    planned = (plan or {}).get("hosts", {})
    return [{"host": host, "role": planned.get(host, {}).get("role", ""),
             "devices": [{"device": d["device"], "ip": (d.get("ip") or {}).get("ipaddr")} for d in result["devices"]]}
            for host, result in zip(hosts, facts)]


def ping_args(pairs: List[Dict[str, Any]], host: str) -> List[Dict[str, Any]]:
    """The hccn_ping ``pairs`` option of ``host``: its own pairs as {device, address}."""
    return [{"device": p["device"], "address": p["address"]} for p in pairs if p["src"] == host]


# ---------------------------------------------------------------- network report rows

def _row(node: str, npu: Any, check: str, value: Any, expected: Any, ok: bool, fnum: str, fix: str) -> Dict[str, Any]:
    return {"node": node, "npu": "-" if npu is None else str(npu), "check": check, "value": str(value),
            "expected": str(expected), "status": "OK" if ok else "FAIL", "f": fnum, "fix": fix}


def _device_rows(host: str, dev: Dict[str, Any], conf: Optional[Dict[str, Any]], ip_owner: Dict[str, List[str]],
                 tls_expected: Optional[int]) -> List[Dict[str, Any]]:
    n = dev["device"]
    rows = [
        _row(host, n, "link", dev["link"], "UP", dev["link"] == "UP", "F19",
             f"check the cable/optics and the switch port; hccn_tool -i {n} -link -g"),
        _row(host, n, "net_health", dev["net_health"], "Success", dev["net_health"] == "Success", "F19",
             f"check the detect address: hccn_tool -i {n} -netdetect -g; hccn_tool -i {n} -net_health -g"),
    ]
    ip = (dev.get("ip") or {}).get("ipaddr")
    others = [o for o in ip_owner.get(ip or "", []) if o != f"{host}/npu{n}"]
    rows.append(_row(host, n, "ip", ip or "none", "set, unique in the cluster", bool(ip) and not others, "F12",
                     (f"{ip} is also on {', '.join(others)}; give each NPU its own address: " if others else "")
                     + f"hccn_tool -i {n} -ip -s address <ip> netmask <mask>"))
    if tls_expected is not None:
        switch = dev["tls"]["switch"]
        rows.append(_row(host, n, "tls switch", switch, tls_expected, switch == tls_expected, "F20",
                         f"hccn_tool -i {n} -tls -s enable {tls_expected}"))
    if conf is not None:
        want = conf.get(str(n), {}).get("address")
        rows.append(_row(host, n, "hccn.conf address", want or "absent", ip or "none", bool(want) and want == ip, "F4",
                         f"set address_{n}={ip or '<ip>'} in /etc/hccn.conf (it must match hccn_tool -i {n} -ip -g)"))
    return rows


def hccn_rows(facts: Dict[str, Dict[str, Any]], pairs: List[Dict[str, Any]], pings: Dict[str, Dict[str, Any]],
              require_conf: bool = True) -> List[Dict[str, Any]]:
    """Report rows from each node's hccn_facts result, the ping_pairs() and each node's hccn_ping result."""
    ip_owner: Dict[str, List[str]] = {}
    switches: Counter = Counter()
    for host, result in facts.items():
        for dev in result["devices"]:
            if (dev.get("ip") or {}).get("ipaddr"):
                ip_owner.setdefault(dev["ip"]["ipaddr"], []).append(f"{host}/npu{dev['device']}")
            if "tls" in dev:
                switches[dev["tls"]["switch"]] += 1
    # The value most NPUs carry is the expected one; a tie expects 0 (TLS off, the driver default).
    tls_expected = min(switches, key=lambda v: (-switches[v], v)) if switches else None
    rows: List[Dict[str, Any]] = []
    for host, result in facts.items():
        conf = result["hccn_conf"] if result.get("hccn_conf_present") else None
        if require_conf and not result.get("hccn_conf_present"):
            rows.append(_row(host, None, "hccn.conf", "missing", "present", False, "F4",
                             "write /etc/hccn.conf (address_N/netmask_N/netdetect_N/gateway_N per NPU) "
                             "and mount it into the container"))
        for dev in result["devices"]:
            rows += _device_rows(host, dev, conf, ip_owner, tls_expected)
    for host, done in pings.items():
        own = [p for p in pairs if p["src"] == host]
        results = (done or {}).get("results", [])
        if len(own) != len(results):
            raise ValueError(f"{host}: {len(own)} ping pairs but {len(results)} ping results")
        for pair, result in zip(own, results):
            res = dict(pair, **result)
            rows.append(_row(host, res["device"], f"ping {res['dst']}/npu{res['peer_device']} {res['address']}",
                             f"{res['received']}/{res['sent']} received", f"{res['sent']}/{res['sent']} received",
                             res["ok"], "F12",
                             f"hccn_tool -i {res['device']} -ping -g address {res['address']} pkt {res['sent']}; check link, "
                             f"netmask and gateway of both NPUs (hccn_tool -i N -gateway -g)"))
    return rows


def sort_rows(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Failures first, then by node and NPU (numeric), keeping the check order."""
    def key(item: Tuple[int, Dict[str, Any]]) -> tuple:
        index, row = item
        npu = int(row["npu"]) if str(row["npu"]).isdigit() else -1
        return (row["status"] == "OK", str(row["node"]), npu, index)
    return [row for _index, row in sorted(enumerate(rows), key=key)]


def format_table(rows: List[Dict[str, Any]], columns: Tuple[str, ...] = TABLE_COLUMNS) -> str:
    """An aligned text table of ``rows`` (failures first), with a header and a summary line."""
    ordered = sort_rows(rows)
    cells = [[c.upper() for c in columns]] + [[str(r.get(c, "")) for c in columns] for r in ordered]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in cells]
    failed = sum(1 for r in rows if r["status"] != "OK")
    lines.append(f"{len(rows)} checks, {failed} failed")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- listeners (/proc/net/tcp)

def parse_proc_net_tcp(text: str) -> Dict[int, List[int]]:
    """LISTEN sockets of a /proc/net/tcp or tcp6 table: {port: [socket inode, ...]}."""
    found: Dict[int, List[int]] = {}
    for lineno, line in enumerate(text.splitlines()):
        fields = line.split()
        if lineno == 0 or len(fields) < 10:
            continue
        if fields[3] != _TCP_LISTEN:
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        found.setdefault(port, []).append(int(fields[9]))
    return found


def unit_of_cgroup(text: str) -> Optional[str]:
    """The systemd unit (service or scope) a process belongs to, from /proc/PID/cgroup."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1] in ("", "name=systemd"):
            for piece in reversed(parts[2].split("/")):
                if piece.endswith((".service", ".scope")):
                    return piece
    return None


# ---------------------------------------------------------------- versions and timeouts

def uses_ascend_direct(host_plan: Dict[str, Any]) -> bool:
    """True when a launch of the host passes kv_connector_extra_config.use_ascend_direct: true (F11)."""
    for launch in host_plan.get("launches", []):
        argv = launch.get("argv", [])
        for flag, value in zip(argv, argv[1:]):
            if flag == "--kv-transfer-config":
                extra = json.loads(value).get("kv_connector_extra_config") or {}
                if extra.get("use_ascend_direct") is True:
                    return True
    return False


def row_failures(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Failed report rows as preflight failures {host, check, f, seen, expected, fix}."""
    return [{"host": r["node"], "check": f"NPU {r['npu']} {r['check']}" if r["npu"] != "-" else r["check"],
             "f": r["f"], "seen": r["value"], "expected": r["expected"], "fix": r["fix"]}
            for r in rows if r["status"] != "OK"]


def cann_version_key(version: str) -> Tuple[int, ...]:
    """Order CANN versions: 8.2.RC1 < 8.2.RC2 < 8.2.0 < 8.3.RC1 < 8.3.0 < 8.3.1 (RCs precede the release)."""
    match = re.match(r"^\s*(\d+)\.(\d+)\.(?:RC(\d+)|(\d+))(?:\.\w+)*\s*$", version, re.IGNORECASE)
    if match is None:
        raise ValueError(f"CANN version {version!r}: expected MAJOR.MINOR.RCn or MAJOR.MINOR.PATCH")
    major, minor, rc, patch = match.groups()
    return (int(major), int(minor), 0, int(rc)) if rc is not None else (int(major), int(minor), 1, int(patch))


def parse_cann_version_cfg(text: str) -> str:
    """The ``version=`` value of a CANN ``version.cfg``."""
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "version":
            return value.strip()
    raise ValueError("version.cfg has no 'version=' line")


def index_shard_count(index_text: str) -> int:
    """Distinct shard files named in a safetensors index's weight_map."""
    data = json.loads(index_text)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise ValueError("safetensors index has no weight_map object")
    return len(set(weight_map.values()))


def engine_timeout_needed(shards: int, base_s: int, per_shard_s: int) -> int:
    """F8 rule: VLLM_ENGINE_READY_TIMEOUT_S >= base + shards x per-shard seconds."""
    return int(base_s) + int(shards) * int(per_shard_s)
