#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_probe
short_description: Read what preflight checks on a host - shm, disk, memory, NIC addresses, files, commands, CANN
version_added: "0.1.0"
description:
  - Free and total bytes of O(shm_path) (F7) and of the file system that holds (or will hold)
    O(weights_path); the shard count of the weights' safetensors index (F8).
  - The IPv4 addresses of O(nic) from C(ip -j -4 addr show dev NIC) (F15).
  - Whether each of O(files) exists (F4), where each of O(commands) is on PATH, the CANN
    version in O(cann_version_cfg) (F11), and the memory of the host.
  - Read-only; never reports a change.
options:
  shm_path:
    description: Shared memory mount.
    type: path
    default: /dev/shm
  weights_path:
    description: Model directory; when missing, its nearest existing parent is measured.
    type: path
  nic:
    description: Interface whose IPv4 addresses to list.
    type: str
  files:
    description: Paths whose existence to report.
    type: list
    elements: path
    default: []
  commands:
    description: Commands to look up on PATH.
    type: list
    elements: str
    default: []
  cann_version_cfg:
    description: CANN C(version.cfg) to read the C(version=) line from.
    type: path
attributes:
  check_mode:
    support: full
    description: Read-only; check mode returns the same facts.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Read the preflight facts
  ascend_ops.vllm.host_probe:
    weights_path: /root/.cache/GLM-5-w8a8
    nic: enp189s0f0
    files: [/etc/hccn.conf]
    commands: [docker]
    cann_version_cfg: /usr/local/Ascend/ascend-toolkit/latest/version.cfg
  register: probe
"""

RETURN = r"""
shm:
  description: "C({path, free_bytes, total_bytes}) of O(shm_path)."
  returned: success
  type: dict
weights:
  description: "C({path, exists, index_present, shards, fs_path, free_bytes}); null without O(weights_path)."
  returned: success
  type: dict
mem_total_bytes:
  description: MemTotal of C(/proc/meminfo) in bytes.
  returned: success
  type: int
nic:
  description: "C({name, exists, ipv4}); null without O(nic)."
  returned: success
  type: dict
files:
  description: Path -> exists.
  returned: success
  type: dict
commands:
  description: Command -> its path, or null when not on PATH.
  returned: success
  type: dict
cann_version:
  description: The CANN version, null when O(cann_version_cfg) is unset or missing.
  returned: success
  type: str
"""

import json
import os
import shutil
from typing import Any, Dict, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._netcheck import index_shard_count, parse_cann_version_cfg

INDEX = "model.safetensors.index.json"


def _fs(path: str) -> Dict[str, Any]:
    stat = os.statvfs(path)
    return {"free_bytes": stat.f_bavail * stat.f_frsize, "total_bytes": stat.f_blocks * stat.f_frsize}


def _weights(module: AnsibleModule, path: str) -> Dict[str, Any]:
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "/"
    index = os.path.join(path, INDEX)
    shards = 0
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as handle:
                shards = index_shard_count(handle.read())
        except (OSError, ValueError) as exc:
            module.fail_json(msg=f"cannot read the shard list of {index}: {exc}")
    elif os.path.isdir(path):
        shards = sum(1 for name in os.listdir(path) if name.endswith(".safetensors"))
    return {"path": path, "exists": os.path.isdir(path), "index_present": os.path.isfile(index), "shards": shards,
            "fs_path": existing, "free_bytes": _fs(existing)["free_bytes"]}


def _nic(module: AnsibleModule, name: str) -> Dict[str, Any]:
    if not os.path.exists(f"/sys/class/net/{name}"):
        return {"name": name, "exists": False, "ipv4": []}
    ip = module.get_bin_path("ip", required=True)
    rc, out, err = module.run_command([ip, "-j", "-4", "addr", "show", "dev", name])
    if rc != 0:
        module.fail_json(msg=f"'ip -j -4 addr show dev {name}' failed with rc={rc}: {(err or out).strip()}")
    addresses = [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", []) if "local" in a]
    return {"name": name, "exists": True, "ipv4": addresses}


def _mem_total() -> int:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _cann(module: AnsibleModule, path: Optional[str]) -> Optional[str]:
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_cann_version_cfg(handle.read())
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read the CANN version from {path}: {exc}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "shm_path": {"type": "path", "default": "/dev/shm"},
            "weights_path": {"type": "path"},
            "nic": {"type": "str"},
            "files": {"type": "list", "elements": "path", "default": []},
            "commands": {"type": "list", "elements": "str", "default": []},
            "cann_version_cfg": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    shm = dict(_fs(params["shm_path"]), path=params["shm_path"]) if os.path.isdir(params["shm_path"]) else \
        {"path": params["shm_path"], "free_bytes": 0, "total_bytes": 0}
    module.exit_json(
        changed=False,
        shm=shm,
        weights=_weights(module, params["weights_path"]) if params["weights_path"] else None,
        mem_total_bytes=_mem_total(),
        nic=_nic(module, params["nic"]) if params["nic"] else None,
        files={path: os.path.exists(path) for path in params["files"]},
        commands={name: shutil.which(name) for name in params["commands"]},
        cann_version=_cann(module, params["cann_version_cfg"]),
    )


if __name__ == "__main__":
    main()
