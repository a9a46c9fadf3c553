#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port_probe
short_description: Probe TCP ports - free, owned by which unit, reachable - with a short-lived listener
version_added: "0.1.0"
description:
  - C(state=free) tries to bind each port of O(ports) on 0.0.0.0 and, when it cannot, names the
    process and the systemd unit listening on it (from C(/proc)). A port held by a unit matching
    O(allowed_units) counts as allowed (a re-run over a running deployment).
  - C(state=listening) binds every free port of O(ports) and serves them (accept, close) from a
    detached process that exits by itself after O(seconds); ports already in use are skipped.
  - C(state=connect) opens one TCP connection to each of O(targets) and reports refused, timed out
    or unreachable targets.
  - C(state=stopped) ends the listener O(pid) started at O(start_time) (a reused PID is left alone).
  - Leaves nothing behind once the listener is stopped or expired; never reports a change.
options:
  state:
    description: What to do.
    type: str
    choices: [free, listening, connect, stopped]
    required: true
  ports:
    description: Ports for C(free) and C(listening).
    type: list
    elements: int
    default: []
  allowed_units:
    description: Regexes (full match) of systemd unit names whose listeners are allowed with C(state=free).
    type: list
    elements: str
    default: []
  seconds:
    description: Lifetime of the C(listening) process.
    type: int
    default: 60
  targets:
    description: "C([{address, port}]) for C(state=connect)."
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: IPv4 address or name.
        type: str
        required: true
      port:
        description: TCP port.
        type: int
        required: true
  timeout:
    description: Seconds per connection attempt.
    type: float
    default: 3
  pid:
    description: Listener PID for C(state=stopped).
    type: int
  start_time:
    description: Listener start time (RV(start_time) of C(state=listening)) for C(state=stopped).
    type: int
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
- name: Which planned ports are taken
  ascend_ops.vllm.port_probe:
    state: free
    ports: [6700, 10521, 30000]
    allowed_units: ['vllm-.*\.service']
  register: ports

- name: Answer on the planned ports for 60 s at most
  ascend_ops.vllm.port_probe:
    state: listening
    ports: [30000, 30001]
    seconds: 60
  register: listener

- name: Reach them from a peer
  ascend_ops.vllm.port_probe:
    state: connect
    targets: [{address: 10.0.0.11, port: 30000}]
  delegate_to: decode-0

- name: Stop the listener
  ascend_ops.vllm.port_probe:
    state: stopped
    pid: "{{ listener.pid }}"
    start_time: "{{ listener.start_time }}"
  when: listener.pid is not none
"""

RETURN = r"""
ports:
  description: C(state=free) - one entry per port.
  returned: state is free
  type: list
  elements: dict
  sample: [{port: 6700, free: false, allowed: false, pid: 812, process: python3, unit: session-3.scope}]
taken:
  description: C(state=free) - the entries that are neither free nor allowed.
  returned: state is free
  type: list
  elements: dict
pid:
  description: C(state=listening) - PID of the listener; null when no port was free.
  returned: state is listening
  type: int
start_time:
  description: C(state=listening) - the listener's start time (clock ticks since boot).
  returned: state is listening
  type: int
bound:
  description: C(state=listening) - ports the listener serves.
  returned: state is listening
  type: list
  elements: int
skipped:
  description: C(state=listening) - ports already in use (not bound).
  returned: state is listening
  type: list
  elements: int
results:
  description: "C(state=connect) - C({address, port, ok, error, ms}) per target, in order."
  returned: state is connect
  type: list
  elements: dict
failed_targets:
  description: C(state=connect) - the results that did not connect.
  returned: state is connect
  type: list
  elements: dict
stopped:
  description: C(state=stopped) - true when the listener was still running and was ended.
  returned: state is stopped
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._portprobe import (
    connect_all, port_state, start_listener, stop_listener)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["free", "listening", "connect", "stopped"], "required": True},
            "ports": {"type": "list", "elements": "int", "default": []},
            "allowed_units": {"type": "list", "elements": "str", "default": []},
            "seconds": {"type": "int", "default": 60},
            "targets": {"type": "list", "elements": "dict", "default": [], "options": {
                "address": {"type": "str", "required": True},
                "port": {"type": "int", "required": True},
            }},
            "timeout": {"type": "float", "default": 3},
            "pid": {"type": "int"},
            "start_time": {"type": "int"},
        },
        required_if=[("state", "stopped", ("pid",))],
        supports_check_mode=True,
    )
    params = module.params
    bad = [p for p in params["ports"] + [t["port"] for t in params["targets"]] if not 1 <= p <= 65535]
    if bad:
        module.fail_json(msg=f"ports {bad} are outside 1-65535")
    state = params["state"]
    if state == "free":
        ports = [port_state(p, params["allowed_units"]) for p in params["ports"]]
        module.exit_json(changed=False, ports=ports, taken=[p for p in ports if not p["free"] and not p["allowed"]])
    if state == "listening":
        if not 1 <= params["seconds"] <= 3600:
            module.fail_json(msg=f"seconds {params['seconds']} must be within 1-3600")
        module.exit_json(changed=False, **start_listener(params["ports"], params["seconds"]))
    if state == "connect":
        results = connect_all([(t["address"], t["port"]) for t in params["targets"]], params["timeout"])
        module.exit_json(changed=False, results=results, failed_targets=[r for r in results if not r["ok"]])
    module.exit_json(changed=False, stopped=stop_listener(params["pid"], params["start_time"]))


if __name__ == "__main__":
    main()
