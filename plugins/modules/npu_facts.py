#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: npu_facts
short_description: Read Ascend NPU cards, chips, health and processes from C(npu-smi info)
version_added: "0.1.0"
description:
  - Runs C(npu-smi info) and parses its table for the A2 layout (one chip per NPU) and the
    A3 layout (two chips per card, C(Chip Phy-ID) header).
  - Fails, naming the command, its return code and the first line that did not parse, when the
    output has an unknown layout or a malformed row. It never reports zero devices silently.
  - Read-only; never reports a change.
options:
  npu_smi_path:
    description: Path of the C(npu-smi) executable on the managed host.
    type: path
    default: /usr/local/bin/npu-smi
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
- name: Read the NPU inventory
  ascend_ops.vllm.npu_facts:
  register: npu

- name: Require 16 healthy logical devices on A3
  ansible.builtin.assert:
    that:
      - npu.chip_count == 16
      - npu.chips | rejectattr('health', 'equalto', 'OK') | list | length == 0
    fail_msg: "{{ inventory_hostname }}: expected 16 healthy NPU chips, npu-smi shows {{ npu.chip_count }}"
"""

RETURN = r"""
layout:
  description: C(a2) (one chip per NPU) or C(a3) (two chips per card).
  returned: success
  type: str
  sample: a3
version:
  description: The npu-smi (driver) version from the title row.
  returned: success
  type: str
  sample: 25.2.1
npu_count:
  description: Number of NPU cards (distinct NPU ids).
  returned: success
  type: int
  sample: 8
chip_count:
  description: Number of logical devices (chips); what C(hccn_tool -i N) and C(ASCEND_RT_VISIBLE_DEVICES) index.
  returned: success
  type: int
  sample: 16
chips:
  description: One entry per chip, in table order (the logical device order).
  returned: success
  type: list
  elements: dict
  contains:
    logical_id:
      description: Position in the table (logical device id).
      type: int
    npu_id:
      description: NPU (card) id.
      type: int
    chip_id:
      description: Chip index on the card.
      type: int
    phy_id:
      description: Physical id (A3 only, null on A2).
      type: int
    name:
      description: Chip name such as 910B3 or Ascend910.
      type: str
    health:
      description: Health as printed, such as C(OK), C(Warning), C(Alarm) or C(Critical).
      type: str
    power_w:
      description: Power draw in watts; null where npu-smi prints C(-) (the second chip of an A3 card).
      type: float
    temp_c:
      description: Temperature in Celsius.
      type: int
    aicore_pct:
      description: AICore utilisation in percent.
      type: int
    hbm_used_mb:
      description: HBM in use (MB).
      type: int
    hbm_total_mb:
      description: HBM size (MB).
      type: int
    bus_id:
      description: PCI bus id.
      type: str
processes:
  description: Processes holding NPU memory; empty when npu-smi lists none.
  returned: success
  type: list
  elements: dict
  contains:
    npu_id:
      description: NPU id.
      type: int
    chip_id:
      description: Chip index on the card.
      type: int
    pid:
      description: Process id.
      type: int
    name:
      description: Process name.
      type: str
    memory_mb:
      description: NPU memory held (MB).
      type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._npu_smi import ParseError, parse_npu_smi_info


def main() -> None:
    module = AnsibleModule(
        argument_spec={"npu_smi_path": {"type": "path", "default": "/usr/local/bin/npu-smi"}},
        supports_check_mode=True,
    )
    path = module.params["npu_smi_path"]
    if not os.access(path, os.X_OK):
        module.fail_json(msg=f"npu-smi not found or not executable at {path}: install the Ascend driver "
                             f"or set npu_smi_path")
    argv = [path, "info"]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"'{' '.join(argv)}' failed with rc={rc}: {(err or out).strip()}", rc=rc,
                         stdout=out, stderr=err)
    try:
        info = parse_npu_smi_info(out)
    except ParseError as exc:
        module.fail_json(msg=f"cannot parse the output of '{' '.join(argv)}' (rc={rc}): {exc}", rc=rc, stdout=out)
    module.exit_json(changed=False, **info.as_facts())


if __name__ == "__main__":
    main()
