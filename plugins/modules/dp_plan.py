#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dp_plan
short_description: Plan ranks, ports, devices and commands of a vllm-ascend deployment
version_added: "0.1.0"
description:
  - Computes, from the inventory, the complete topology of a vllm-ascend GLM-5 deployment
    (single node, multi-node data parallel with internal or external DP, prefill/decode
    disaggregation with any number of prefill and decode instances) and validates it.
  - For every host it returns the DP instance, rank start, and per local rank the rank, API port,
    C(ASCEND_RT_VISIBLE_DEVICES), headless or not, DP master address and RPC port and the Mooncake
    handshake port range (C(kv_port + dp_rank * tp + tp_rank)); for every launch the exact environment
    and C(vllm serve) argv; for the cluster the proxy command and C(kv_connector_extra_config) sizes.
  - Fails before any host is touched with one line per problem naming the host and the value.
  - The matching action plugin gathers O(hosts) from the inventory groups C(prefill), C(decode),
    C(engine) and C(proxy) when O(hosts) is omitted, so the plan always covers the whole inventory,
    also under C(--limit).
  - Pure computation on the controller; never changes anything.
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
options:
  hosts:
    description:
      - Planner input, one dict per host in inventory order, with keys C(name), C(groups), C(address),
        C(nic), C(instance), C(hardware) (resolved hardware profile), C(npu_count), C(tp_size),
        C(dp_size_local), C(dp_rank_start), C(dp_mode), C(api_port), C(dp_rpc_port), C(kv_port),
        C(model) (resolved model variant), C(model_path), C(profile) (resolved deployment profile),
        C(env_overrides), C(serve_overrides), C(additional_config_overrides).
      - Omit it to let the action plugin build it from the inventory variables C(vllm_*).
    type: list
    elements: dict
    required: false
  proxy:
    description:
      - Proxy settings C(backend), C(port), C(bind), C(python), C(example_script), C(health_interval),
        C(failure_threshold), C(max_retries), C(fallback), C(vllm_router_bin), C(router_policy),
        C(ascend_pd_proxy_bin).
    type: dict
    required: false
  require_nic:
    description:
      - Hosts whose NIC must be known (the hosts being deployed). Default all engine hosts.
    type: list
    elements: str
    required: false
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: Pure computation; check mode returns the same plan.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
notes:
  - Warnings (for example a KV handshake range inside Mooncake's random port range, F5) are returned
    in RV(plan.warnings) and shown as task warnings; they never fail the task.
"""

EXAMPLES = r"""
- name: Plan the whole inventory (the action plugin reads vllm_* variables of every host)
  ascend_ops.vllm.dp_plan:
  run_once: true
  register: plan_result

- name: Plan an explicit two-host internal-DP topology
  ascend_ops.vllm.dp_plan:
    hosts:
      - name: node0
        groups: [engine]
        address: 198.51.100.10
        nic: enp1s0
        hardware: {name: Atlas 800 A3, npus: 16, hbm_gib: 64}
        tp_size: 16
        dp_size_local: 1
        dp_mode: internal
        api_port: 8077
        dp_rpc_port: 12890
        model_path: /root/.cache/GLM5-bf16
        profile: {serve: {served-model-name: glm-5}}
      - name: node1
        groups: [engine]
        address: 198.51.100.11
        nic: enp1s0
        hardware: {name: Atlas 800 A3, npus: 16, hbm_gib: 64}
        tp_size: 16
        dp_size_local: 1
        dp_mode: internal
        api_port: 8077
        dp_rpc_port: 12890
        model_path: /root/.cache/GLM5-bf16
        profile: {serve: {served-model-name: glm-5}}
"""

RETURN = r"""
plan:
  description: The deployment plan.
  returned: success
  type: dict
  contains:
    mode:
      description: C(single), C(dp) or C(pd).
      type: str
      sample: pd
    hosts:
      description: Per inventory host, its address, role, instance, ranks and launches (name, unit, env, argv, api_port, devices, kv_ports).
      type: dict
    instances:
      description: Per DP instance, its role, engine id, dp/tp size, master and API servers.
      type: dict
    proxy:
      description: The proxy host, port, backend, argv and the prefiller/decoder lists; null without PD.
      type: dict
    warnings:
      description: Non-fatal findings, one line each.
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import PlanError, plan


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "hosts": {"type": "list", "elements": "dict", "required": False},
            "proxy": {"type": "dict", "required": False},
            "require_nic": {"type": "list", "elements": "str", "required": False},
        },
        supports_check_mode=True,
    )
    if not module.params["hosts"]:
        module.fail_json(msg="hosts is required when the module runs without its action plugin")
    try:
        result = plan({"hosts": module.params["hosts"], "proxy": module.params["proxy"],
                       "require_nic": module.params["require_nic"]})
    except PlanError as exc:
        module.fail_json(msg="plan rejected:\n" + "\n".join(exc.errors), errors=exc.errors)
    for warning in result["warnings"]:
        module.warn(warning)
    module.exit_json(changed=False, plan=result)


if __name__ == "__main__":
    main()
