#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: engine_status
short_description: Report the systemd state and /health of planned vLLM launches on a host
version_added: "0.1.0"
description:
  - For each launch of the plan on this host, reads the systemd unit (C(ActiveState), C(SubState),
    C(NRestarts), C(MainPID)) and, for API servers, C(GET /health) on the loopback address.
  - Returns one row per launch, for the status playbook's table. Never changes anything.
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
options:
  launches:
    description:
      - Launches of this host from the plan (C(vllm_plan.hosts[inventory_hostname].launches)); each needs
        C(unit) and C(api_port) (null for headless), and may carry C(role), C(instance), C(ranks).
    type: list
    elements: dict
    default: []
  extra_units:
    description:
      - Other units to report (the proxy), each with C(unit), C(role) and optional C(port) and C(health_path).
    type: list
    elements: dict
    default: []
  host_name:
    description: Name to put in the C(host) field of every row (the inventory name).
    type: str
    default: ""
  timeout:
    description: Seconds to wait for each /health answer.
    type: float
    default: 3
attributes:
  check_mode:
    support: full
    description: Read-only.
  diff_mode:
    support: none
    description: Nothing changes.
"""

EXAMPLES = r"""
- name: Read the state of this host's launches
  ascend_ops.vllm.engine_status:
    launches: "{{ vllm_plan.hosts[inventory_hostname].launches }}"
  register: status
"""

RETURN = r"""
rows:
  description: One row per launch.
  returned: always
  type: list
  elements: dict
  sample:
    - {host: decode0, unit: vllm-decode-r0.service, role: decode, instance: decode, ranks: [0], port: 6721,
       active: active, sub: running, restarts: 0, pid: 4242, health: 200, ok: true}
unhealthy:
  description: Units whose state is not active/running or whose /health is not 200.
  returned: always
  type: list
  elements: str
"""

import urllib.error

from ansible.module_utils import urls
from ansible.module_utils.basic import AnsibleModule


def unit_state(module: AnsibleModule, unit: str) -> dict:
    rc, out, err = module.run_command(
        ["systemctl", "show", "--property=ActiveState,SubState,NRestarts,MainPID", unit])
    if rc != 0:
        return {"active": "unknown", "sub": err.strip() or "systemctl failed", "restarts": None, "pid": None}
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {
        "active": props.get("ActiveState", "unknown"),
        "sub": props.get("SubState", "unknown"),
        "restarts": int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None,
        "pid": int(props["MainPID"]) if props.get("MainPID", "0").isdigit() and props.get("MainPID") != "0" else None,
    }


def health(port: int, path: str, timeout: float):
    try:
        with urls.open_url(f"http://127.0.0.1:{port}{path}", timeout=timeout, use_proxy=False, use_netrc=False) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError, urls.ConnectionError) as exc:
        return f"unreachable ({getattr(exc, 'reason', exc)})"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "launches": {"type": "list", "elements": "dict", "default": []},
            "extra_units": {"type": "list", "elements": "dict", "default": []},
            "host_name": {"type": "str", "default": ""},
            "timeout": {"type": "float", "default": 3},
        },
        supports_check_mode=True,
    )
    rows = []
    items = [dict(launch, port=launch.get("api_port"), health_path="/health") for launch in module.params["launches"]]
    items += [dict(extra) for extra in module.params["extra_units"]]
    for item in items:
        row = {"host": module.params["host_name"], "unit": item["unit"], "role": item.get("role"), "instance": item.get("instance"),
               "ranks": item.get("ranks"), "port": item.get("port")}
        row.update(unit_state(module, item["unit"]))
        path = item.get("health_path")
        row["health"] = health(item["port"], path, module.params["timeout"]) if item.get("port") and path else None
        row["ok"] = row["active"] == "active" and row["sub"] == "running" and row["health"] in (None, 200)
        rows.append(row)
    module.exit_json(changed=False, rows=rows, unhealthy=[r["unit"] for r in rows if not r["ok"]])


if __name__ == "__main__":
    main()
