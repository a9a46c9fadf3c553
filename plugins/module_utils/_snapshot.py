# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster consistency snapshot: per-host facts that must agree, a reusable
weights manifest, and the report of values that differ between hosts of a role.

Standard library only."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections import Counter

CHUNK = 8 * 1024 * 1024
CACHE_NAME = ".ascend_ops-manifest.json"


def parse_key_values(text: str) -> dict:
    """``Key=Value`` lines (driver version.info, CANN version.cfg) as a dict; other lines are ignored."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.strip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def sha256_file(path: str, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_manifest(directory: str, cache_path: str | None = None, write: bool = True) -> tuple[dict, int]:
    """sha256 of every file directly in ``directory`` (shards, index, config).

    Entries of the cache whose size and mtime did not change are reused, so a
    second snapshot of an unchanged checkpoint reads no shard. Returns the
    manifest {name: sha256} and how many files were hashed this time.
    ``write=False`` (check mode) uses the cache but never updates it.
    """
    cache_path = cache_path or os.path.join(directory, CACHE_NAME)
    try:
        with open(cache_path, encoding="utf-8") as handle:
            cache = json.load(handle)
    except (OSError, ValueError):
        cache = {}
    manifest, fresh, hashed = {}, {}, 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name == os.path.basename(cache_path) or not os.path.isfile(path):
            continue
        stat = os.stat(path)
        entry = cache.get(name)
        if not (entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns):
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
            hashed += 1
        fresh[name] = entry
        manifest[name] = entry["sha256"]
    if write and fresh != cache:
        tmp = cache_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(fresh, handle, indent=1, sort_keys=True)
        os.replace(tmp, cache_path)
    return manifest, hashed


# Values the plan makes different on every host, rank or instance; the snapshot compares the rest.
HOST_SPECIFIC_ENV = ("HCCL_IF_IP", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME",
                     "ASCEND_RT_VISIBLE_DEVICES")
# --data-parallel-address is the DP master of the instance: two instances of a role differ there by design.
RANK_SPECIFIC_FLAGS = ("--port", "--data-parallel-rank", "--data-parallel-start-rank", "--headless",
                       "--data-parallel-address")
# Keys of JSON-valued flags that name the instance (engine_id: one per PD instance, older versions only).
INSTANCE_SPECIFIC_JSON_KEYS = {"--kv-transfer-config": ("engine_id",)}


def _flag_value(flag: str, values: list):
    """A flag's value: True for a switch, a dict for a JSON object (so differences name the key), else the text."""
    if not values:
        return True
    text = " ".join(values)
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return text
        if isinstance(doc, dict):
            return {k: v for k, v in doc.items() if k not in INSTANCE_SPECIFIC_JSON_KEYS.get(flag, ())}
    return text


def launch_config(env_text: str | None, script_text: str | None) -> dict:
    """The comparable part of a rendered launch: env without host-specific values, flags without rank or
    instance ones; JSON-valued flags (--additional-config, --kv-transfer-config, ...) as dicts."""
    env = {}
    for line in (env_text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#") and key not in HOST_SPECIFIC_ENV:
            env[key] = value.strip().strip('"')
    argv = []
    for line in (script_text or "").splitlines():
        if line.startswith("exec "):
            argv = shlex.split(line)[1:]
    flags, i = {}, 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("--"):
            values = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                values.append(argv[i])
            if word not in RANK_SPECIFIC_FLAGS:
                flags[word] = _flag_value(word, values)
        elif not flags and word not in ("vllm", "serve"):
            flags["model"] = word
        i += 1
    return {"env": env, "flags": flags}


def flatten(value, prefix: str = "") -> dict:
    """Nested dicts as {"a.b.c": leaf}; lists are leaves."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def under(key: str, prefixes) -> str | None:
    """The first of ``prefixes`` that ``key`` is or starts with (``driver`` holds ``driver.Version``)."""
    return next((p for p in prefixes if key == p or key.startswith(p + ".")), None)


def odd_hosts(values: dict) -> list:
    """Hosts whose value is not the one most hosts hold (every host when no value has a majority of its own;
    none when all agree). ``values`` maps host -> value."""
    encoded = {host: json.dumps(v, sort_keys=True) for host, v in values.items()}
    tally = Counter(encoded.values()).most_common()
    if len(tally) < 2:
        return []
    common = tally[0][0] if tally[0][1] > tally[1][1] else None
    return [host for host in values if encoded[host] != common]


def differences(snapshots: dict, roles: dict, matter: tuple = ()) -> list[dict]:
    """Every key whose value differs between hosts of the same role.

    ``snapshots`` maps host -> snapshot dict, ``roles`` host -> role. A row:
    {"role", "key", "values": {host: value}, "odd": [hosts], "matters": bool}; a
    key missing on a host counts as a difference. ``odd`` names the hosts whose
    value is not the one most hosts of the role hold (every host of the role when
    no value has a majority of its own). ``matters`` is true for keys starting with
    one of ``matter`` (driver, CANN, image, weights: a preflight failure).
    """
    rows = []
    by_role: dict = {}
    for host, role in roles.items():
        if host in snapshots:
            by_role.setdefault(role, []).append(host)
    for role, hosts in sorted(by_role.items()):
        flat = {host: flatten(snapshots[host]) for host in hosts}
        keys = sorted(set().union(*(f.keys() for f in flat.values())))
        for key in keys:
            values = {host: flat[host].get(key, "<missing>") for host in hosts}
            odd = odd_hosts(values)
            if odd:
                rows.append({"role": role, "key": key, "values": values, "odd": odd,
                             "matters": under(key, matter) is not None})
    return rows
