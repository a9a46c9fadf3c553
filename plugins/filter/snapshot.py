# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_differences filter: values that differ between hosts of the same role."""

from __future__ import annotations

from ansible_collections.ascend_ops.vllm.plugins.module_utils._snapshot import differences

DOCUMENTATION = r"""
name: snapshot_differences
short_description: Values of cluster snapshots that differ between hosts of the same role
version_added: "0.1.0"
description:
  - Flattens each host's snapshot to dotted keys and returns one row per key whose value differs between
    hosts of the same role (a key missing on a host counts). C(odd) names the hosts whose value is not the one
    most hosts of the role hold (every host of the role when no value has a majority). C(matters) marks keys
    under one of O(matter).
options:
  _input:
    description: Snapshots by host.
    type: dict
    required: true
  roles:
    description: Role by host.
    type: dict
    required: true
  matter:
    description: Key prefixes whose differences fail preflight (driver, cann, image, weights).
    type: list
    elements: str
    default: []
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Report differences
  ansible.builtin.debug:
    msg: "{{ snapshots | ascend_ops.vllm.snapshot_differences(roles, ['driver', 'weights']) }}"
"""

RETURN = r"""
_value:
  description: Rows with role, key, values (by host), odd (hosts) and matters.
  type: list
  elements: dict
"""


def snapshot_differences(snapshots, roles, matter=()):
    """Rows of keys whose values differ between hosts of one role."""
    return differences(dict(snapshots), dict(roles), tuple(matter))


class FilterModule:
    """ascend_ops.vllm snapshot filters."""

    def filters(self):
        return {"snapshot_differences": snapshot_differences}
