# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the preflight and hccn_verify roles; the logic lives in module_utils/_netcheck.py."""

from __future__ import annotations

from typing import Any, Dict, List

from ansible.errors import AnsibleFilterError

from ansible_collections.ascend_ops.vllm.plugins.module_utils._netcheck import (
    cann_version_key, engine_timeout_needed, format_table, hccn_rows, listen_ports, ping_args, ping_nodes, ping_pairs,
    planned_ports, reach_checks, reach_targets, row_failures, uses_ascend_direct)


def _hccn_ping_pairs(nodes: List[Dict[str, Any]], mesh: str = "same_index", max_pairs_per_npu: int = 4) -> List[Dict[str, Any]]:
    try:
        return ping_pairs(nodes, mesh, int(max_pairs_per_npu))
    except ValueError as exc:
        raise AnsibleFilterError(f"hccn_ping_pairs: {exc}") from exc


def _cann_at_least(version: str, minimum: str) -> bool:
    try:
        return cann_version_key(version) >= cann_version_key(minimum)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _preflight_lines(failures: List[Dict[str, Any]]) -> List[str]:
    """``host | check (Fnn) | seen | expected | fix`` per failure."""
    return [f"{f['host']} | {f['check']} ({f['f']}) | {f['seen']} | {f['expected']} | {f['fix']}" for f in failures]


class FilterModule:
    """Network and preflight filters."""

    def filters(self) -> Dict[str, Any]:
        return {
            "planned_ports": planned_ports,
            "reach_checks": reach_checks,
            "reach_targets": reach_targets,
            "listen_ports": listen_ports,
            "hccn_ping_pairs": _hccn_ping_pairs,
            "hccn_ping_nodes": ping_nodes,
            "hccn_ping_args": ping_args,
            "hccn_rows": hccn_rows,
            "report_table": format_table,
            "cann_at_least": _cann_at_least,
            "engine_timeout_needed": engine_timeout_needed,
            "preflight_lines": _preflight_lines,
            "hccn_failures": row_failures,
            "uses_ascend_direct": uses_ascend_direct,
        }
