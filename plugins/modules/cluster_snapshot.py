#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_snapshot
short_description: Collect what must agree between hosts of a vllm-ascend cluster
version_added: "0.1.0"
description:
  - Reads the NPU driver and firmware versions (C(version.info)), the CANN toolkit version (C(version.cfg)),
    the kernel release, the image digest (docker runtime), the rendered env files and launch scripts of the
    planned launches, and a sha256 manifest of the weights directory.
  - The manifest is cached in the weights directory (file size and mtime per entry); unchanged files are not
    read again, so a second snapshot of a 700 GB checkpoint costs a directory listing.
  - Changes nothing but that cache file; check mode does not write it either.
options:
  driver_version_info:
    description: Driver C(version.info).
    type: path
    default: /usr/local/Ascend/driver/version.info
  cann_version_cfg:
    description: CANN toolkit C(version.cfg).
    type: path
    default: /usr/local/Ascend/ascend-toolkit/latest/version.cfg
  weights_path:
    description: Weights directory to fingerprint; empty skips the manifest.
    type: path
  launches:
    description: Planned launch names of this host; their C(.env) and C(.sh) under O(config_dir) are read.
    type: list
    elements: str
    default: []
  config_dir:
    description: Directory of the rendered env files and launch scripts.
    type: path
    default: /etc/ascend_ops/vllm
  image:
    description: Container image whose digest to record (docker runtime); empty skips it.
    type: str
    default: ""
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
attributes:
  check_mode:
    support: full
    description: Reads everything; does not update the manifest cache.
  diff_mode:
    support: none
    description: Nothing to diff.
"""

EXAMPLES = r"""
- name: Snapshot this host
  ascend_ops.vllm.cluster_snapshot:
    weights_path: /root/.cache/glm5-w8a8
    launches: [vllm-decode-r0, vllm-decode-r1]
  register: snap
"""

RETURN = r"""
snapshot:
  description: >-
    driver, cann, kernel, image, launch (env and flags of the rendered launches without host-, rank- and
    instance-specific values; JSON-valued flags such as --additional-config as dicts), launch_count,
    launch_mismatch (launches of this host that differ from its first), weights (manifest).
  returned: always
  type: dict
hashed_files:
  description: Weight files hashed this time (0 when the cache covered every file).
  returned: always
  type: int
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._snapshot import (
    launch_config, parse_key_values, weights_manifest)


def read(path: str):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "driver_version_info": {"type": "path", "default": "/usr/local/Ascend/driver/version.info"},
            "cann_version_cfg": {"type": "path", "default": "/usr/local/Ascend/ascend-toolkit/latest/version.cfg"},
            "weights_path": {"type": "path"},
            "launches": {"type": "list", "elements": "str", "default": []},
            "config_dir": {"type": "path", "default": "/etc/ascend_ops/vllm"},
            "image": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    driver = read(p["driver_version_info"])
    cann = read(p["cann_version_cfg"])
    snapshot = {
        "driver": parse_key_values(driver) if driver is not None else "<missing>",
        "cann": parse_key_values(cann) if cann is not None else "<missing>",
        "kernel": platform.release(),
        "launch_count": len(p["launches"]),
    }
    configs = [launch_config(read(os.path.join(p["config_dir"], name + ".env")),
                             read(os.path.join(p["config_dir"], name + ".sh"))) for name in p["launches"]]
    if configs:
        snapshot["launch"] = configs[0]
        if any(c != configs[0] for c in configs[1:]):
            snapshot["launch_mismatch"] = [n for n, c in zip(p["launches"], configs) if c != configs[0]]
    if p["image"]:
        rc, out, err = module.run_command(["docker", "image", "inspect", "--format", "{{.Id}}", p["image"]])
        snapshot["image"] = out.strip() if rc == 0 else f"<missing: {err.strip()}>"
    hashed = 0
    if p["weights_path"]:
        if os.path.isdir(p["weights_path"]):
            manifest, hashed = weights_manifest(p["weights_path"], write=not module.check_mode)
            snapshot["weights"] = manifest
        else:
            snapshot["weights"] = "<missing>"
    module.exit_json(changed=False, snapshot=snapshot, hashed_files=hashed)


if __name__ == "__main__":
    main()
