#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_tree
short_description: Plan the in-cluster copy of a checkpoint as a doubling tree
version_added: "0.1.0"
description:
  - Pure computation, changes nothing. In round k every host that holds the weights serves one host that does not,
    so the copies double each round and the hub link is crossed only by the first download.
options:
  holders:
    description: Hosts that hold a verified copy, in the order they should serve.
    type: list
    elements: str
    required: true
  needers:
    description: Hosts that need a copy.
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    description: Same result in check mode.
extends_documentation_fragment:
  - ascend_ops.vllm.weights
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Plan the copy rounds
  ascend_ops.vllm.weights_tree:
    holders: [node0]
    needers: [node1, node2, node3, node4]
  run_once: true
  register: tree
"""

RETURN = r"""
rounds:
  description: One list of C({src, dst}) pairs per round.
  returned: success
  type: list
  elements: list
  sample: [[{src: node0, dst: node1}], [{src: node0, dst: node2}, {src: node1, dst: node3}]]
source_of:
  description: For every host that needs a copy, the host it copies from.
  returned: success
  type: dict
  sample: {node1: node0, node2: node0, node3: node1}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import doubling_rounds


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            holders=dict(type="list", elements="str", required=True),
            needers=dict(type="list", elements="str", required=True),
        ),
        supports_check_mode=True,
    )
    try:
        rounds = doubling_rounds(module.params["holders"], module.params["needers"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    source_of = {pair["dst"]: pair["src"] for pairs in rounds for pair in pairs}
    module.exit_json(changed=False, rounds=rounds, source_of=source_of)


if __name__ == "__main__":
    main()
