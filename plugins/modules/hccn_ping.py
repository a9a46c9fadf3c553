#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hccn_ping
short_description: Ping remote NPU device IPs from local NPUs with C(hccn_tool -ping)
version_added: "0.1.0"
description:
  - For each pair runs C(hccn_tool -i DEVICE -ping -g address ADDRESS pkt COUNT) and parses the
    replies, the summary and the mean reply time.
  - One ping at a time per local device; different devices ping in parallel (threads), at most
    O(max_parallel) at once.
  - A lost ping is data, not a failure; RV(failed_pairs) counts the pairs that lost any packet.
    The module fails only when C(hccn_tool) errors without a ping summary or prints an unknown line,
    naming the device, the address, the command and its return code.
  - Read-only; never reports a change.
options:
  pairs:
    description: Local device and remote device IP to ping from it.
    type: list
    elements: dict
    required: true
    suboptions:
      device:
        description: Local logical device id (C(hccn_tool -i)).
        type: int
        required: true
      address:
        description: IPv4 address of the remote NPU device.
        type: str
        required: true
  count:
    description: Packets per pair (C(pkt)).
    type: int
    default: 3
  max_parallel:
    description: Most devices pinging at the same time.
    type: int
    default: 8
  hccn_tool_path:
    description: Path of C(hccn_tool) on the managed host.
    type: path
    default: /usr/local/Ascend/driver/tools/hccn_tool
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
- name: Ping two remote NPUs from device 0
  ascend_ops.vllm.hccn_ping:
    pairs:
      - {device: 0, address: 29.1.170.143}
      - {device: 1, address: 29.1.170.144}
    count: 5
  register: ping

- name: Require every pair to answer
  ansible.builtin.assert:
    that: ping.failed_pairs == 0
    fail_msg: "{{ inventory_hostname }}: {{ ping.results | rejectattr('ok') | map(attribute='address') | list }} lost packets"
"""

RETURN = r"""
results:
  description: One entry per pair, in the order of O(pairs).
  returned: success
  type: list
  elements: dict
  contains:
    device:
      description: Local device id.
      type: int
    address:
      description: Remote address.
      type: str
    sent:
      description: Packets transmitted.
      type: int
    received:
      description: Replies received.
      type: int
    loss_pct:
      description: Packet loss in percent, as printed.
      type: float
    avg_ms:
      description: Mean reply time in ms; null when nothing came back.
      type: float
    times_ms:
      description: Reply times in ms, in arrival order.
      type: list
      elements: float
    ok:
      description: True when every packet came back.
      type: bool
  sample:
    - {device: 3, address: 29.1.137.205, sent: 3, received: 3, loss_pct: 0.0, avg_ms: 0.497, times_ms: [1.418, 0.034, 0.04], ok: true}
failed_pairs:
  description: Number of pairs that lost at least one packet.
  returned: success
  type: int
  sample: 0
"""

import ipaddress
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._hccn import ParseError, parse_ping


def _ping(module: AnsibleModule, tool: str, device: int, address: str, count: int) -> Tuple[Dict[str, Any], str]:
    """Ping once; return (result, error) with exactly one of them empty."""
    argv = [tool, "-i", str(device), "-ping", "-g", "address", address, "pkt", str(count)]
    where = f"device {device} -> {address}: '{' '.join(argv)}'"
    rc, out, err = module.run_command(argv)
    try:
        parsed = parse_ping(out)
    except ParseError as exc:
        return {}, f"{where} rc={rc}: " + ((err or out).strip() if rc else f"cannot parse its output: {exc}")
    if parsed["device"] != device or parsed["address"] != address:
        return {}, f"{where}: output is for device {parsed['device']} -> {parsed['address']}"
    result = {key: parsed[key] for key in ("device", "address", "sent", "received", "loss_pct", "avg_ms", "times_ms")}
    result["ok"] = parsed["sent"] > 0 and parsed["received"] == parsed["sent"]
    return result, ""


def _ping_device(module: AnsibleModule, tool: str, count: int,
                 jobs: List[Tuple[int, Dict[str, Any]]]) -> List[Tuple[int, Dict[str, Any], str]]:
    """All pairs of one device, one after the other."""
    return [(index,) + _ping(module, tool, pair["device"], pair["address"], count) for index, pair in jobs]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pairs": {"type": "list", "elements": "dict", "required": True, "options": {
                "device": {"type": "int", "required": True},
                "address": {"type": "str", "required": True},
            }},
            "count": {"type": "int", "default": 3},
            "max_parallel": {"type": "int", "default": 8},
            "hccn_tool_path": {"type": "path", "default": "/usr/local/Ascend/driver/tools/hccn_tool"},
        },
        supports_check_mode=True,
    )
    params = module.params
    tool = params["hccn_tool_path"]
    if not os.access(tool, os.X_OK):
        module.fail_json(msg=f"hccn_tool not found or not executable at {tool}: install the Ascend driver "
                             f"or set hccn_tool_path")
    if params["count"] < 1 or params["max_parallel"] < 1:
        module.fail_json(msg=f"count ({params['count']}) and max_parallel ({params['max_parallel']}) must be >= 1")
    by_device: Dict[int, List[Tuple[int, Dict[str, Any]]]] = {}
    for index, pair in enumerate(params["pairs"]):
        try:
            ipaddress.IPv4Address(pair["address"])
        except ValueError:
            module.fail_json(msg=f"pairs[{index}]: address {pair['address']!r} is not an IPv4 address")
        if pair["device"] < 0:
            module.fail_json(msg=f"pairs[{index}]: device {pair['device']} must be >= 0")
        by_device.setdefault(pair["device"], []).append((index, pair))
    with ThreadPoolExecutor(max_workers=min(params["max_parallel"], max(len(by_device), 1))) as pool:
        done = [item for batch in pool.map(lambda jobs: _ping_device(module, tool, params["count"], jobs),
                                           by_device.values()) for item in batch]
    ordered = sorted(done, key=lambda item: item[0])
    errors = [error for _index, _result, error in ordered if error]
    if errors:
        module.fail_json(msg="hccn_tool ping failed: " + "; ".join(errors))
    results = [result for _index, result, _error in ordered]
    module.exit_json(changed=False, results=results, failed_pairs=sum(1 for r in results if not r["ok"]))


if __name__ == "__main__":
    main()
