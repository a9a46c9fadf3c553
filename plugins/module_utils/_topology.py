# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Topology planner for vllm-ascend deployments: the one place that computes
ranks, ports, device lists, DP masters, KV handshake ranges and proxy lists.

Pure standard library, no Ansible imports. ``plan(spec)`` either returns a
complete, consistent plan or raises ``PlanError`` whose ``errors`` are one line
each, naming the host (or group) and the value at fault.

Input (``spec``)::

    {"hosts": [HostSpec, ...],          # inventory order
     "proxy": ProxySpec | None}

A HostSpec holds what the operator knows about one host (see ``HOST_KEYS``);
recipes (model variant, hardware profile, deployment profile) arrive already
resolved as dicts so that group_vars/host_vars can override any of them.
"""

from __future__ import annotations

import copy
import json

from ansible_collections.ascend_ops.vllm.plugins.module_utils._versions import (
    VersionError, context as version_context, lint_launch, migrate_profile,
)

ROLES_PD = ("prefill", "decode")
ROLE_ENGINE = "engine"
ROLE_PROXY = "proxy"
DP_MODES = ("external", "internal")

# Environment variables the planner owns; a profile or an override that sets
# them is rejected (they come from the topology, never typed by hand).
NETWORK_ENV = ("HCCL_IF_IP", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME")
DEVICES_ENV = "ASCEND_RT_VISIBLE_DEVICES"
MANAGEMENT_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
# vllm serve flags the planner owns.
TOPOLOGY_FLAGS = (
    "port", "headless", "data-parallel-size", "data-parallel-size-local",
    "data-parallel-start-rank", "data-parallel-rank", "data-parallel-address",
    "data-parallel-rpc-port", "tensor-parallel-size", "kv-transfer-config",
)

HOST_KEYS = (
    "name", "groups", "address", "nic", "instance", "hardware", "npu_count",
    "tp_size", "dp_size_local", "dp_rank_start", "dp_mode", "api_port",
    "dp_rpc_port", "kv_port", "model", "model_path", "profile",
    "env_overrides", "serve_overrides", "additional_config_overrides", "settings",
)

# Values that must agree on every host of one DP instance.
INSTANCE_UNIFORM = ("tp_size", "dp_mode", "dp_rpc_port", "kv_port", "model_path", "hardware")


class PlanError(Exception):
    """Raised with every validation failure, one line each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --------------------------------------------------------------------------
# recipe helpers
# --------------------------------------------------------------------------

def deep_merge(base: dict, override: dict) -> dict:
    """Merge ``override`` into a copy of ``base``; a ``None`` value deletes."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_profile(profiles: dict, name: str, _seen: tuple = ()) -> dict:
    """Resolve a deployment profile and the chain it ``extends``."""
    if name in _seen:
        raise PlanError([f"deployment profile {name!r}: 'extends' loops through {' -> '.join(_seen + (name,))}"])
    if name not in profiles:
        raise PlanError([f"deployment profile {name!r} is not defined; known: {', '.join(sorted(profiles))}"])
    own = profiles[name] or {}
    merged: dict = {}
    for parent in own.get("extends", []) or []:
        merged = deep_merge(merged, resolve_profile(profiles, parent, _seen + (name,)))
    body = {k: v for k, v in own.items() if k != "extends"}
    return deep_merge(merged, body)


def env_value(value) -> str:
    """Environment values are strings; YAML booleans render as the seed writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flag_argv(flag: str, value) -> list[str]:
    """argv words for one ``vllm serve`` flag; True is a bare switch, dicts are JSON."""
    if value is True:
        return ["--" + flag]
    if value is False or value is None:
        return []
    if isinstance(value, (dict, list)) and not (isinstance(value, list) and flag == "served-model-name"):
        return ["--" + flag, json.dumps(value)]
    if isinstance(value, list):
        return ["--" + flag] + [str(v) for v in value]
    return ["--" + flag, str(value)]


# --------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------

def _group_instances(hosts: list[dict]) -> dict[str, list[dict]]:
    instances: dict[str, list[dict]] = {}
    for host in hosts:
        if not host["role"]:
            continue
        instances.setdefault(host["instance"], []).append(host)
    return instances


def _check_host_shape(host: dict, errors: list[str]) -> None:
    name, role = host["name"], host["role"]
    if role not in ROLES_PD + (ROLE_ENGINE,):
        errors.append(f"host {name}: role {role!r} unknown; put the host in exactly one of the groups prefill, decode, engine (plus proxy)")
        return
    for key in ("tp_size", "dp_size_local", "api_port"):
        value = host.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(f"host {name} ({role}): vllm_{key} = {value!r}, expected a positive integer")
    for key in ("dp_rpc_port", "kv_port"):
        value = host.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            errors.append(f"host {name} ({role}): vllm_{key} = {value!r}, expected a positive integer or null")
    if host.get("dp_mode") not in DP_MODES:
        errors.append(f"host {name} ({role}): vllm_dp_mode = {host.get('dp_mode')!r}, expected one of {', '.join(DP_MODES)}")
    if not host.get("address"):
        errors.append(f"host {name} ({role}): no cluster address; set vllm_cluster_address or ansible_host")
    hardware = host.get("hardware") or {}
    if not isinstance(hardware.get("npus"), int):
        errors.append(f"host {name} ({role}): hardware profile has no integer 'npus'")


def _assign_ranks(members: list[dict], instance: str, errors: list[str]) -> int:
    """Give every host of an instance its rank start; return dp_size."""
    next_start = 0
    for host in members:
        if host.get("dp_rank_start") is None:
            host["dp_rank_start"] = next_start
        next_start = host["dp_rank_start"] + host["dp_size_local"]
    owners: dict[int, str] = {}
    for host in members:
        for rank in range(host["dp_rank_start"], host["dp_rank_start"] + host["dp_size_local"]):
            if rank in owners:
                errors.append(f"instance {instance}: DP rank {rank} is assigned to both {owners[rank]} and {host['name']}; fix vllm_dp_rank_start")
            owners[rank] = host["name"]
    dp_size = sum(h["dp_size_local"] for h in members)
    missing = sorted(set(range(dp_size)) - set(owners))
    extra = sorted(set(owners) - set(range(dp_size)))
    if missing or extra:
        errors.append(
            f"instance {instance}: DP ranks must cover [0, {dp_size}) exactly once; "
            f"missing {missing or 'none'}, outside the range "
            + (", ".join(f"{rank} (on {owners[rank]})" for rank in extra) or "none") + "; fix vllm_dp_rank_start"
        )
    return dp_size


def _check_instance_uniform(members: list[dict], instance: str, errors: list[str]) -> None:
    first = members[0]
    for key in INSTANCE_UNIFORM:
        for host in members[1:]:
            if host.get(key) != first.get(key):
                errors.append(
                    f"instance {instance}: vllm_{key} differs inside one DP instance "
                    f"({first['name']}={first.get(key)!r}, {host['name']}={host.get(key)!r}); make it equal"
                )
    if first["dp_mode"] == "internal" and len({h["dp_size_local"] for h in members}) > 1:
        errors.append(
            f"instance {instance}: internal DP needs the same vllm_dp_size_local on every host "
            "(" + ", ".join(f"{h['name']}={h['dp_size_local']}" for h in members) + ")"
        )
    roles = {h["role"] for h in members}
    if len(roles) > 1:
        errors.append(f"instance {instance}: hosts of one instance are in different groups ({', '.join(sorted(roles))})")


def _served_name(host: dict) -> str | None:
    name = (host.get("serve_overrides") or {}).get("served-model-name") or \
        ((host.get("profile") or {}).get("serve") or {}).get("served-model-name")
    return (name[0] if isinstance(name, list) else name) if name else None


def _devices(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


def _capacity(instance: str, members: list[dict], dp_size: int, pd: bool, errors: list[str]) -> None:
    """F13/F14: weights per NPU must fit the HBM budget of the hardware."""
    host = members[0]
    model = host.get("model") or {}
    hardware = host.get("hardware") or {}
    total = model.get("weights_gib")
    hbm = hardware.get("hbm_gib")
    if total is None or hbm is None:
        return
    dense = model.get("dense_gib", 0)
    tp = host["tp_size"]
    serve = {**(host["profile"].get("serve") or {}), **(host.get("serve_overrides") or {})}
    util = float(serve.get("gpu-memory-utilization") or 0.9)
    if serve.get("enable-expert-parallel"):
        per_npu = (total - dense) / (dp_size * tp) + dense / tp
    else:
        per_npu = total / tp
    overhead = float(hardware.get("pd_overhead_gib", 10)) if pd else 0.0
    need = per_npu + overhead
    budget = hbm * util
    if need > budget:
        errors.append(
            f"instance {instance} ({host['name']}...): {model.get('name', 'model')} needs ~{need:.1f} GiB per NPU "
            f"(weights {per_npu:.1f}{f' + PD overhead {overhead:.0f}' if overhead else ''}) but "
            f"{hardware.get('name', 'hardware')} gives {budget:.1f} GiB ({hbm} GiB x gpu-memory-utilization {util}) "
            f"with dp {dp_size} x tp {tp}; add NPUs (more DP ranks/hosts) or choose a smaller quantization (F13/F14)"
        )


def _kv_sizes(instances: dict, info: dict, role: str, errors: list[str]) -> dict | None:
    shapes = {(info[name]["dp_size"], info[name]["tp_size"]): name
              for name, members in instances.items() if members[0]["role"] == role}
    if not shapes:
        return None
    if len(shapes) > 1:
        described = ", ".join(f"{name}: dp {dp} tp {tp}" for (dp, tp), name in sorted(shapes.items()))
        errors.append(
            f"group {role}: instances have different shapes ({described}); kv_connector_extra_config.{role} "
            f"can describe only one; make every {role} instance the same dp/tp (F10)"
        )
    dp, tp = min(shapes)
    return {"dp_size": dp, "tp_size": tp}


def plan(spec: dict) -> dict:
    """Compute the complete deployment plan or raise PlanError."""
    errors: list[str] = []
    warnings: list[str] = []
    hosts = [dict(h) for h in spec.get("hosts", [])]
    if not hosts:
        raise PlanError(["inventory: no hosts in the groups prefill, decode, engine or proxy"])
    names = [h["name"] for h in hosts]
    for host in hosts:
        groups = list(host.get("groups") or [])
        engine_groups = [g for g in groups if g in ROLES_PD + (ROLE_ENGINE,)]
        if len(engine_groups) > 1:
            errors.append(f"host {host['name']}: in groups {', '.join(engine_groups)}; a host runs exactly one engine role (prefill, decode or engine)")
        host["role"] = engine_groups[0] if engine_groups else None
        host["proxy"] = ROLE_PROXY in groups
        if host["role"] and not host.get("instance"):
            host["instance"] = host["role"]
    engines = [h for h in hosts if h["role"]]
    require_nic = spec.get("require_nic")
    for host in engines:
        host["_nic_required"] = require_nic is None or host["name"] in require_nic
    for host in engines:
        _check_host_shape(host, errors)
    if errors:
        raise PlanError(errors)

    roles = {h["role"] for h in engines}
    pd = bool(roles & set(ROLES_PD))
    if pd and ROLE_ENGINE in roles:
        errors.append("inventory: group engine cannot be combined with prefill/decode; use engine for single-node/DP, prefill+decode for PD")
    if pd and not set(ROLES_PD) <= roles:
        errors.append(f"inventory: PD disaggregation needs hosts in both prefill and decode; only {', '.join(sorted(roles & set(ROLES_PD)))} has hosts")
    if errors:
        raise PlanError(errors)

    for host in engines:
        if not isinstance(host.get("profile"), dict):
            host["profile"] = {}
    version = _render_for_version(spec.get("version"), engines)

    instances = _group_instances(hosts)
    info: dict[str, dict] = {}
    order = sorted(instances, key=lambda n: (ROLES_PD.index(instances[n][0]["role"]) if instances[n][0]["role"] in ROLES_PD else 0,
                                             names.index(instances[n][0]["name"])))
    for engine_id, name in enumerate(order):
        members = instances[name]
        _check_instance_uniform(members, name, errors)
        dp_size = _assign_ranks(members, name, errors)
        master = members[0]
        info[name] = {
            "name": name, "role": master["role"], "engine_id": str(engine_id), "dp_size": dp_size,
            "tp_size": master["tp_size"], "dp_mode": master["dp_mode"], "master": master["name"],
            "master_address": master["address"], "dp_rpc_port": master.get("dp_rpc_port"),
            "kv_port": master.get("kv_port"), "hosts": [h["name"] for h in members],
            "served_model_name": _served_name(master),
        }
        if dp_size > 1 and master.get("dp_rpc_port") is None:
            errors.append(f"instance {name}: data parallel size {dp_size} needs vllm_dp_rpc_port")
        if pd and master.get("kv_port") is None:
            errors.append(f"instance {name}: PD needs vllm_kv_port (Mooncake handshake base port)")
        if master["dp_mode"] == "internal" and pd:
            errors.append(f"instance {name}: PD instances use external DP (one vllm serve per rank, section 5.3); set vllm_dp_mode: external")
    if errors:
        raise PlanError(errors)

    kv_sizes = {role: _kv_sizes(instances, info, role, errors) for role in ROLES_PD} if pd else {}

    out_hosts: dict[str, dict] = {}
    api_servers: dict[str, list[dict]] = {name: [] for name in instances}
    for host in engines:
        inst = info[host["instance"]]
        planned = _plan_host(host, inst, pd, kv_sizes, errors, warnings)
        out_hosts[host["name"]] = planned
        for launch in planned["launches"]:
            if launch["api_port"] is not None:
                api_servers[host["instance"]].append(
                    {"host": host["name"], "address": host["address"], "port": launch["api_port"],
                     "instance": host["instance"], "ranks": launch["ranks"], "unit": launch["unit"]})
    for name, members in instances.items():
        _capacity(name, members, info[name]["dp_size"], pd, errors)
    for name in instances:
        info[name]["api_servers"] = api_servers[name]

    proxy = _plan_proxy(spec.get("proxy"), hosts, info, pd, out_hosts, errors, warnings)
    _check_ports(out_hosts, proxy, errors)
    if errors:
        raise PlanError(list(dict.fromkeys(errors)))
    for planned in out_hosts.values():
        planned.pop("_ports")
    return {
        "mode": "pd" if pd else ("dp" if any(i["dp_size"] > 1 for i in info.values()) else "single"),
        "hosts": out_hosts,
        "instances": {name: info[name] for name in order},
        "proxy": proxy,
        "warnings": list(dict.fromkeys(warnings)),
        **({"version": version} if version else {}),
    }


def _render_for_version(vspec: dict | None, engines: list[dict]) -> dict | None:
    """Render every engine host's profile for the image version (recipes keyed by version)."""
    vspec = vspec or {}
    try:
        ctx = version_context(vspec.get("name"), vspec.get("rules"))
        notes: dict[str, list[str]] = {}
        for host in engines:
            host["profile"], notes[host["name"]] = migrate_profile(host["profile"], ctx, host["role"], host.get("settings"))
            host["_version"] = ctx
    except VersionError as exc:
        raise PlanError(exc.errors) from exc
    if ctx is None:
        return None
    return {"name": ctx["name"], "family": ctx["family"], "notes": {k: v for k, v in notes.items() if v}}


def _plan_host(host: dict, inst: dict, pd: bool, kv_sizes: dict, errors: list[str], warnings: list[str]) -> dict:
    name, role = host["name"], host["role"]
    hardware = host["hardware"]
    npus = host.get("npu_count") or hardware["npus"]
    tp, local = host["tp_size"], host["dp_size_local"]
    if tp * local > npus:
        errors.append(
            f"host {name} ({role}): vllm_tp_size {tp} x vllm_dp_size_local {local} = {tp * local} NPUs "
            f"> {npus} NPUs of hardware {hardware.get('name', '?')}; lower one of them"
        )
    profile = host["profile"]
    external = inst["dp_mode"] == "external"
    ports: list[tuple[int, str]] = []
    ranks: list[dict] = []
    launches: list[dict] = []
    is_master = inst["master"] == name
    if inst["dp_size"] > 1 and is_master and inst["dp_rpc_port"] is not None:
        ports.append((inst["dp_rpc_port"], f"DP RPC port of instance {inst['name']}"))

    for i in range(local):
        rank = host["dp_rank_start"] + i
        devices = _devices(i * tp if external else i * tp, tp)
        kv_range = None
        if pd:
            low = int(inst["kv_port"]) + rank * tp
            kv_range = [low, low + tp - 1]
            for port in range(low, low + tp):
                ports.append((port, f"KV handshake port of rank {rank}"))
            random_hi = 20000 + npus * 1000
            if low < random_hi and low + tp - 1 >= 20000:
                warnings.append(
                    f"host {name} ({role}): KV handshake ports {low}-{low + tp - 1} of rank {rank} lie inside "
                    f"Mooncake's random port range [20000, {random_hi}); raise vllm_kv_port to >= {random_hi} (F5)"
                )
        api_port = host["api_port"] + i if external else host["api_port"]
        ranks.append({"rank": rank, "local_rank": i, "devices": devices, "kv_ports": kv_range,
                      "api_port": api_port if (external or (is_master and i == 0)) else None,
                      "headless": (not external) and not is_master,
                      "dp_master": inst["master_address"], "dp_rpc_port": inst["dp_rpc_port"]})

    if external:
        for r in ranks:
            launches.append(_launch(host, inst, pd, kv_sizes, [r], errors, warnings))
    else:
        launches.append(_launch(host, inst, pd, kv_sizes, ranks, errors, warnings))
    for launch in launches:
        if launch["api_port"] is not None:
            ports.append((launch["api_port"], f"API port of {launch['name']}"))
    return {
        "address": host["address"], "nic": host.get("nic"), "role": role, "instance": inst["name"],
        "engine_id": inst["engine_id"], "hardware": hardware.get("name"), "npus": npus,
        "dp_rank_start": host["dp_rank_start"], "dp_size_local": local, "tp_size": tp,
        "ranks": ranks, "launches": launches, "_ports": ports,
        # The container spec of seed section 4.1: one /dev/davinciN per NPU plus the management nodes.
        "device_nodes": [f"/dev/davinci{i}" for i in range(npus)] + list(MANAGEMENT_DEVICES),
    }


def _launch(host: dict, inst: dict, pd: bool, kv_sizes: dict, ranks: list[dict], errors: list[str],
            warnings: list[str]) -> dict:
    name, role = host["name"], host["role"]
    profile = host["profile"]
    hardware = host["hardware"]
    model = host.get("model") or {}
    external = inst["dp_mode"] == "external"
    first = ranks[0]
    headless = first["headless"]
    unit_name = f"vllm-{inst['name']}-r{first['rank']}"

    env: dict[str, str] = {}
    multi_host = len(inst["hosts"]) > 1 or pd
    if profile.get("network_env", multi_host):
        if not host.get("nic") and host["_nic_required"]:
            errors.append(f"host {name} ({role}): no NIC for HCCL/GLOO/TP sockets; set vllm_nic_name, or deploy "
                          f"(the plan role derives it from the address {host['address']}) (F15)")
        env["HCCL_IF_IP"] = host["address"]
        for var in NETWORK_ENV[1:]:
            env[var] = host.get("nic") or ""
    devices = [d for r in ranks for d in r["devices"]]
    npus = host.get("npu_count") or hardware["npus"]
    if external or devices != list(range(npus)):
        env[DEVICES_ENV] = ",".join(str(d) for d in devices)
    for key, value in (profile.get("env") or {}).items():
        if key in NETWORK_ENV or key == DEVICES_ENV:
            errors.append(f"host {name} ({role}): deployment profile env sets {key}, which the planner derives from the topology; remove it")
        elif value is not None:
            env[key] = env_value(value)
    mode_env = (hardware.get("env") or {}).get("pd" if pd else "colocated") or {}
    for key, value in mode_env.items():
        env[key] = env_value(value)
    for key, value in (host.get("env_overrides") or {}).items():
        if key in NETWORK_ENV or key == DEVICES_ENV:
            errors.append(f"host {name} ({role}): vllm_env_overrides sets {key}, which the planner derives from the topology; remove it")
        elif value is None:
            env.pop(key, None)
        else:
            env[key] = env_value(value)

    serve = dict(profile.get("serve") or {})
    for key, value in (host.get("serve_overrides") or {}).items():
        if key in TOPOLOGY_FLAGS:
            errors.append(f"host {name} ({role}): vllm_serve_overrides sets --{key}, which the planner derives from the topology; remove it")
            continue
        serve[key] = value
    additional = deep_merge(serve.pop("additional-config", None) or {}, host.get("additional_config_overrides") or {})
    for flag in TOPOLOGY_FLAGS:
        if flag in serve:
            errors.append(f"host {name} ({role}): deployment profile sets --{flag}, which the planner derives from the topology")
            serve.pop(flag)

    argv = ["vllm", "serve", host["model_path"]]
    host_flag = serve.pop("host", None)
    if host_flag:
        argv += ["--host", str(host_flag)]
    # Headless workers get the host's port too, as the seed writes it; they bind no API server.
    argv += ["--port", str(first["api_port"] if first["api_port"] is not None else host["api_port"])]
    if headless:
        argv += ["--headless"]
    argv += ["--data-parallel-size", str(inst["dp_size"])]
    if external and inst["dp_size"] > 1:
        argv += ["--data-parallel-rank", str(first["rank"])]
    elif not external and inst["dp_size"] > 1:
        argv += ["--data-parallel-size-local", str(len(ranks))]
        if headless:
            argv += ["--data-parallel-start-rank", str(first["rank"])]
    if inst["dp_size"] > 1:
        argv += ["--data-parallel-address", inst["master_address"], "--data-parallel-rpc-port", str(inst["dp_rpc_port"])]
    argv += ["--tensor-parallel-size", str(inst["tp_size"])]
    if model.get("quantization") and "quantization" not in serve:
        serve["quantization"] = model["quantization"]
    for flag, value in serve.items():
        argv += flag_argv(flag, value)
    if additional:
        argv += ["--additional-config", json.dumps(additional)]
    if pd:
        kv = dict(profile.get("kv_transfer") or {})
        extra = dict(kv.pop("extra_config", None) or {})
        extra["prefill"] = kv_sizes.get("prefill")
        extra["decode"] = kv_sizes.get("decode")
        kv_config = {
            "kv_connector": kv.pop("connector", "MooncakeConnectorV1"),
            "kv_role": "kv_producer" if role == "prefill" else "kv_consumer",
            "kv_port": str(inst["kv_port"]),
        }
        if kv.pop("engine_id", True):
            kv_config["engine_id"] = inst["engine_id"]
        kv_config.update(kv)
        kv_config["kv_connector_extra_config"] = extra
        argv += ["--kv-transfer-config", json.dumps(kv_config)]

    _check_rules(f"host {name} ({role})", role, pd, hardware, profile, env, additional, errors, warnings)
    lint_launch(f"host {name} ({role})", role, env, additional, host.get("_version"), errors, warnings)
    return {
        "name": unit_name, "unit": unit_name + ".service", "instance": inst["name"], "role": role,
        "ranks": [r["rank"] for r in ranks], "api_port": None if headless else first["api_port"],
        "headless": headless, "devices": devices,
        "kv_ports": [ranks[0]["kv_ports"][0], ranks[-1]["kv_ports"][1]] if pd else None,
        "env": env, "argv": argv,
    }


def _check_rules(where: str, role: str, pd: bool, hardware: dict, profile: dict, env: dict,
                 additional: dict, errors: list[str], warnings: list[str]) -> None:
    """Known-failure rules on one rendered launch (F9, F10, F17)."""
    balance = env.get("VLLM_ASCEND_BALANCE_SCHEDULING", "0") not in ("0", "", "false")
    balance = balance or bool(additional.get("enable_balance_scheduling"))
    recompute = bool(additional.get("recompute_scheduler_enable"))
    if pd and balance:
        errors.append(f"{where}: balance scheduling (VLLM_ASCEND_BALANCE_SCHEDULING) is set on a {role} node; "
                      "it only works without PD (AlltoAll deadlock, F9); remove it")
    if recompute and not pd:
        errors.append(f"{where}: additional_config recompute_scheduler_enable is set without PD; it is for decode "
                      "nodes only (F9); remove it")
    elif recompute and role == "prefill" and not balance:
        warnings.append(f"{where}: recompute_scheduler_enable on a prefill node only acts on decode; newer "
                        "vllm-ascend ignores it there with a warning (F9)")
    for var in sorted(set(hardware.get("forbidden_env") or []) & set(env)):
        errors.append(f"{where}: {var} is set but the hardware is {hardware.get('name')}; it is only valid on A3 "
                      "and breaks the transport (F17); remove it")
    kv_extra = (profile.get("kv_transfer") or {}).get("extra_config") or {}
    for part in ROLES_PD:
        if part in kv_extra:
            errors.append(f"{where}: kv_transfer.extra_config.{part} is typed by hand; the planner derives it from "
                          "the topology (F10); remove it")


def _plan_proxy(pspec: dict | None, hosts: list[dict], info: dict, pd: bool, out_hosts: dict,
                errors: list[str], warnings: list[str]) -> dict | None:
    proxies = [h for h in hosts if h["proxy"]]
    if not pd:
        if proxies:
            warnings.append(f"group proxy ({', '.join(h['name'] for h in proxies)}) is ignored without PD (no prefill/decode groups)")
        return None
    if len(proxies) != 1:
        errors.append(f"group proxy: PD needs exactly one proxy host, found {len(proxies)} ({', '.join(h['name'] for h in proxies) or 'none'})")
        return None
    pspec = pspec or {}
    host = proxies[0]
    prefillers = [s for i in info.values() if i["role"] == "prefill" for s in i["api_servers"]]
    decoders = [s for i in info.values() if i["role"] == "decode" for s in i["api_servers"]]
    port = int(pspec.get("port", 8000))
    bind = str(pspec.get("bind", "0.0.0.0"))
    backend = pspec.get("backend", "ascend_pd_proxy")
    fallback = pspec.get("fallback")
    if fallback is not None and fallback not in ("drained", "always", "off"):
        errors.append(f"host {host['name']} (proxy): vllm_proxy_fallback {fallback!r} unknown; use drained, always or "
                      "'off' (quoted: YAML reads a bare off as false)")
        return None
    argv = proxy_argv(backend, pspec, bind, port, prefillers, decoders)
    if argv is None:
        errors.append(f"host {host['name']} (proxy): pd_proxy_backend {backend!r} unknown; use vllm_ascend_example, ascend_pd_proxy or vllm_router")
        return None
    return {
        "host": host["name"], "address": host["address"], "port": port, "bind": bind, "backend": backend,
        "argv": argv, "unset_env": ["http_proxy", "https_proxy"],
        # whether one role serves whole requests while the other is drained (restart.yml relies on it for 1P1D)
        "fallback": str(fallback or "drained") if backend == "ascend_pd_proxy" else "off",
        "prefillers": prefillers, "decoders": decoders,
    }


def proxy_argv(backend: str, pspec: dict, bind: str, port: int, prefillers: list[dict], decoders: list[dict]) -> list[str] | None:
    """The proxy command for one backend, from the planned API servers."""
    def seed_style(head: list[str]) -> list[str]:
        return head + [
            "--port", str(port), "--host", bind,
            "--prefiller-hosts", *[s["address"] for s in prefillers],
            "--prefiller-ports", *[str(s["port"]) for s in prefillers],
            "--decoder-hosts", *[s["address"] for s in decoders],
            "--decoder-ports", *[str(s["port"]) for s in decoders],
        ]
    if backend == "vllm_ascend_example":
        return seed_style([str(pspec.get("python", "python")), str(pspec.get("example_script", "load_balance_proxy_server_example.py"))])
    if backend == "ascend_pd_proxy":
        extra: list[str] = []
        for key in ("health_interval", "failure_threshold", "max_retries", "fallback"):
            if pspec.get(key) is not None:
                extra += ["--" + key.replace("_", "-"), str(pspec[key])]
        return seed_style([str(pspec.get("ascend_pd_proxy_bin", "ascend-pd-proxy"))]) + extra
    if backend == "vllm_router":
        argv = [str(pspec.get("vllm_router_bin", "vllm-router")), "--vllm-pd-disaggregation"]
        for s in prefillers:
            argv += ["--prefill", f"http://{s['address']}:{s['port']}"]
        for s in decoders:
            argv += ["--decode", f"http://{s['address']}:{s['port']}"]
        # round_robin, not the default cache_aware: that one renders/tokenizes every request on every worker.
        argv += ["--host", bind, "--port", str(port), "--policy", str(pspec.get("router_policy", "round_robin")),
                 "--health-check-endpoint", "/health"]
        for key, flag in (("health_interval", "--health-check-interval-secs"),
                          ("failure_threshold", "--health-failure-threshold"),
                          ("max_retries", "--retry-max-retries")):
            if pspec.get(key) is not None:
                argv += [flag, str(pspec[key])]
        return argv
    return None


def _check_ports(out_hosts: dict, proxy: dict | None, errors: list[str]) -> None:
    """F6: every port the plan assigns is unique per host."""
    per_host = {name: list(h["_ports"]) for name, h in out_hosts.items()}
    if proxy:
        per_host.setdefault(proxy["host"], []).append((proxy["port"], "proxy port"))
    for name, ports in per_host.items():
        seen: dict[int, str] = {}
        for port, why in ports:
            if not 1 <= port <= 65535:
                errors.append(f"host {name}: {why} {port} is outside 1-65535")
            elif port in seen:
                errors.append(f"host {name}: port {port} is planned twice ({seen[port]}; {why}); move one of the base ports (F6)")
            else:
                seen[port] = why


def topology_table(planned: dict) -> list[str]:
    """The plan as an aligned text table: host, role, instance, ranks, ports, devices."""
    rows = [("HOST", "ADDRESS", "ROLE", "INSTANCE", "RANKS", "API PORTS", "KV PORTS", "DEVICES", "UNIT")]
    for name, host in planned["hosts"].items():
        for launch in host["launches"]:
            ranks = launch["ranks"]
            rows.append((
                name, host["address"], host["role"], launch["instance"],
                f"{ranks[0]}" if len(ranks) == 1 else f"{ranks[0]}-{ranks[-1]}",
                "headless" if launch["api_port"] is None else str(launch["api_port"]),
                "-" if not launch["kv_ports"] else f"{launch['kv_ports'][0]}-{launch['kv_ports'][1]}",
                ",".join(str(d) for d in launch["devices"]), launch["unit"],
            ))
    proxy = planned.get("proxy")
    if proxy:
        rows.append((proxy["host"], proxy["address"], "proxy", proxy["backend"], "-", str(proxy["port"]), "-", "-",
                     "vllm-proxy.service"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
