# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""text_table filter: a list of dicts as aligned text lines."""

from __future__ import annotations

DOCUMENTATION = r"""
name: text_table
short_description: Format a list of dicts as an aligned text table
version_added: "0.1.0"
description:
  - Returns a list of lines, the first the upper-cased column names, one line per row, columns padded to
    the widest cell. Missing keys and null values print as C(-).
options:
  _input:
    description: The rows.
    type: list
    elements: dict
    required: true
  columns:
    description: The keys to print, in order.
    type: list
    elements: str
    required: true
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Print the status table
  ansible.builtin.debug:
    msg: "{{ rows | ascend_ops.vllm.text_table(['host', 'unit', 'active']) }}"
"""

RETURN = r"""
_value:
  description: The table, one string per line.
  type: list
  elements: str
"""


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def text_table(rows, columns):
    """Format ``rows`` (dicts) as aligned lines under a header of ``columns``."""
    table = [[c.upper() for c in columns]] + [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]


class FilterModule:
    """ascend_ops.vllm table filters."""

    def filters(self):
        return {"text_table": text_table}
