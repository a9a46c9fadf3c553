# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster snapshot filters: values that differ between hosts of the same role, and those differences as
preflight failures (one per odd host)."""

from __future__ import annotations

import json

from ansible_collections.ascend_ops.vllm.plugins.module_utils._snapshot import differences, odd_hosts, under

DOCUMENTATION = r"""
name: snapshot_differences
short_description: Values of cluster snapshots that differ between hosts of the same role
version_added: "0.1.0"
description:
  - Flattens each host's snapshot to dotted keys and returns one row per key whose value differs between
    hosts of the same role (a key missing on a host counts). C(odd) names the hosts whose value is not the one
    most hosts of the role hold (every host of the role when no value has a majority). C(matters) marks keys
    under one of O(matter).
  - Keys under one of O(across) are also compared between roles. When every role agrees inside on such a key
    but the roles do not agree with each other, one more row compares all hosts, its C(role) the role names
    joined by C(+) (C(prefill+decode)).
  - The filter C(snapshot_failures) of this file turns the rows that matter into preflight failures, one per
    odd host (C(host), C(check), C(f), C(seen), C(expected), C(fix)).
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
  across:
    description: Key prefixes that must also agree between roles (driver, cann, image).
    type: list
    elements: str
    default: []
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Report differences
  ansible.builtin.debug:
    msg: "{{ snapshots | ascend_ops.vllm.snapshot_differences(roles, ['driver', 'weights'], ['driver']) }}"

- name: One preflight failure per odd host
  ansible.builtin.set_fact:
    failures: "{{ rows | ascend_ops.vllm.snapshot_failures({'driver': 'install {expected} on {host}'}, {'cann': 'F11'}) }}"
"""

RETURN = r"""
_value:
  description: Rows with role, key, values (by host), odd (hosts) and matters.
  type: list
  elements: dict
"""

MISSING = "<missing"


def snapshot_differences(snapshots, roles, matter=(), across=()):
    """Rows of keys whose values differ between hosts of one role; with ``across``, also rows for keys under
    those prefixes on which each role agrees inside but the roles disagree."""
    snapshots, roles, matter = dict(snapshots), dict(roles), tuple(matter)
    rows = differences(snapshots, roles, matter)
    if not across:
        return rows
    reported = {row["key"] for row in rows}
    together = "+".join(dict.fromkeys(role for host, role in roles.items() if host in snapshots))
    between = differences(snapshots, dict.fromkeys(roles, together), matter)
    return rows + [row for row in between if under(row["key"], across) and row["key"] not in reported]


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _short(value) -> str:
    """A manifest entry for a failure line: ``missing`` or the first 12 hex digits of the sha256."""
    text = _show(value)
    return "missing" if text.startswith(MISSING) else "sha256 " + text[:12]


def _fill(text: str, **values: str) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def snapshot_failures(rows, fixes=None, known=None, absent_ok=(), group=(), label="consistency"):
    """Rows that matter as preflight failures {host, check, f, seen, expected, fix}, one per odd host.

    ``fixes`` and ``known`` map key prefixes (driver, cann, image, weights) to the fix text and the
    KNOWN_FAILURES row (``label`` when none); the fix may name {host}, {role}, {key} and {expected}.
    Under ``absent_ok`` prefixes a host whose value is missing is left out (what the deploy brings itself:
    an image not pulled yet, weights not downloaded yet) and the others are compared again. Under ``group``
    prefixes (weights: one key per file) a host gets one failure naming its differing entries.
    """
    fixes, known = dict(fixes or {}), dict(known or {})
    failures, grouped = [], {}
    for row in rows:
        if not row.get("matters"):
            continue
        key, role = row["key"], row["role"]
        values = {host: value for host, value in row["values"].items()
                  if not (under(key, absent_ok) and isinstance(value, str) and value.startswith(MISSING))}
        odd = odd_hosts(values)
        holders = [host for host in values if host not in odd]
        prefix = under(key, fixes) or under(key, known) or key.split(".")[0]
        for host in odd:
            entry = {"host": host, "role": role, "key": key, "prefix": prefix, "value": values[host],
                     "holders": holders, "expected": _show(values[holders[0]]) if holders else None,
                     "values": values}
            top = under(key, group)
            if top:
                grouped.setdefault((host, role, top), []).append(entry)
            else:
                failures.append(_failure(entry, key, _show(values[host]), fixes, known, label))
    for (host, role, top), entries in grouped.items():
        names = [f"{e['key'][len(top) + 1:] or top} ({_short(e['value'])})" for e in entries]
        seen = (f"{len(names)} {'file differs' if len(names) == 1 else 'files differ'}: " + ", ".join(names[:3])
                + (f", +{len(names) - 3} more" if len(names) > 3 else ""))
        holders = [h for h in entries[0]["holders"] if all(h in e["holders"] for e in entries)]
        failures.append(_failure(dict(entries[0], holders=holders, expected="the same files and sha256"),
                                 top, seen, fixes, known, label))
    return failures


def _failure(entry: dict, key: str, seen: str, fixes: dict, known: dict, label: str) -> dict:
    role, holders, expected = entry["role"], entry["holders"], entry["expected"]
    if holders:
        wanted = f"{expected} (as on {', '.join(holders)})"
    else:
        wanted = (f"one value on every {role} host (none is held by most: "
                  + ", ".join(f"{h} {_show(v)}" for h, v in entry["values"].items()) + ")")
    fix = _fill(fixes.get(entry["prefix"], "give every {role} host the same {key}"),
                host=entry["host"], role=role, key=key, expected=expected if holders else "no value is held by most")
    return {"host": entry["host"], "check": f"{key} same on every {role} host",
            "f": known.get(entry["prefix"], label), "seen": seen, "expected": wanted, "fix": fix}


class FilterModule:
    """ascend_ops.vllm snapshot filters."""

    def filters(self):
        return {"snapshot_differences": snapshot_differences, "snapshot_failures": snapshot_failures}
