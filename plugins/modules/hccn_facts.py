#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hccn_facts
short_description: Read the NPU network state (link, health, IP, TLS, LLDP) with C(hccn_tool)
version_added: "0.1.0"
description:
  - For each logical NPU device runs C(hccn_tool -i N -link -g), C(-net_health -g), C(-ip -g),
    C(-netdetect -g), C(-gateway -g), C(-tls -g), C(-lldp -g) and, on A3, C(-vnic -g), and parses
    every output strictly.
  - Also parses C(/etc/hccn.conf) (Mooncake reads the device IPs from it); a missing file is
    reported with O(hccn_conf_path) and RV(hccn_conf_present=false), not as a failure.
  - Fails, naming the device, the command, its return code and the offending line, when a tool
    call fails or prints something unknown. A DOWN link or a Fault health is data, listed in
    RV(problems).
  - Read-only; never reports a change.
options:
  devices:
    description:
      - Logical device ids to query.
      - Default is every logical device C(npu-smi info) lists (16 on A3, 8 on A2).
    type: list
    elements: int
  device_count:
    description: Query devices C(0 .. device_count-1) without asking C(npu-smi).
    type: int
  hardware:
    description:
      - C(a3) adds the C(-vnic -g) check. C(auto) reads the layout from C(npu-smi info).
    type: str
    choices: [auto, a2, a3]
    default: auto
  checks:
    description:
      - Subset of checks to run. Default is all of them (C(vnic) only on A3).
    type: list
    elements: str
    choices: [link, net_health, ip, netdetect, gateway, tls, lldp, vnic]
  hccn_tool_path:
    description: Path of C(hccn_tool) on the managed host.
    type: path
    default: /usr/local/Ascend/driver/tools/hccn_tool
  npu_smi_path:
    description: Path of C(npu-smi), used to count devices and detect the layout.
    type: path
    default: /usr/local/bin/npu-smi
  hccn_conf_path:
    description: Path of the hccn configuration file.
    type: path
    default: /etc/hccn.conf
attributes:
  check_mode:
    support: full
    description: Read-only; check mode returns the same facts.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
notes:
  - O(devices) and O(device_count) are mutually exclusive.
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Read the NPU network state of every device
  ascend_ops.vllm.hccn_facts:
  register: hccn

- name: Fail on any DOWN link, unhealthy NIC or TLS mismatch
  ansible.builtin.assert:
    that: hccn.problems | length == 0
    fail_msg: "{{ inventory_hostname }}: {{ hccn.problems | join('; ') }}"

- name: Only link and health of devices 0-7 on an A2 node
  ascend_ops.vllm.hccn_facts:
    device_count: 8
    hardware: a2
    checks: [link, net_health]
"""

RETURN = r"""
hardware:
  description: The hardware the checks were chosen for (C(a2) or C(a3)).
  returned: success
  type: str
  sample: a3
devices:
  description: One entry per queried device; only the keys of the checks that ran are present.
  returned: success
  type: list
  elements: dict
  contains:
    device:
      description: Logical device id.
      type: int
    link:
      description: C(UP) or C(DOWN).
      type: str
    net_health:
      description: C(Success), C(Init), C(Fault), ...
      type: str
    ip:
      description: "C({ipaddr, netmask}), or null when the device has no IP (C(Get ipconf failed))."
      type: dict
    netdetect:
      description: Net detect address.
      type: str
    gateway:
      description: "Default routes, C([{gateway, iface}])."
      type: list
    tls:
      description: "C({dev_id, switch, preconfigured, alarm_threshold_days})."
      type: dict
    lldp:
      description: "Neighbour switch: C(chassis_mac), C(port_ifname), C(system_description), C(mgmt_address), C(max_frame_size), C(tlvs)."
      type: dict
    vnic:
      description: "A3 only: C({link, ipaddr, netmask})."
      type: dict
  sample:
    - device: 0
      link: UP
      net_health: Success
      ip: {ipaddr: 29.1.137.205, netmask: 255.255.0.0}
hccn_conf_present:
  description: Whether O(hccn_conf_path) exists.
  returned: success
  type: bool
hccn_conf:
  description: Parsed O(hccn_conf_path), keyed by device id (as a string), each a dict of C(address), C(netmask), ...
  returned: success
  type: dict
  sample: {"0": {"address": 29.1.137.205, "netmask": 255.255.0.0, "netdetect": 29.1.0.1, "gateway": 29.1.0.1}}
problems:
  description:
    - Human-readable findings, each naming the device and the value seen.
    - DOWN links, health other than C(Success), missing IPs, an IP that differs from hccn.conf,
      TLS switches that differ between devices, DOWN vnic.
  returned: success
  type: list
  elements: str
"""

import os
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._hccn import (
    PARSERS, ParseError, parse_hccn_conf, parse_ip_records)
from ansible_collections.ascend_ops.vllm.plugins.module_utils._npu_smi import NpuInfo, parse_npu_smi_info

ALL_CHECKS = ["link", "net_health", "ip", "netdetect", "gateway", "tls", "lldp", "vnic"]


def _executable(module: AnsibleModule, option: str) -> str:
    path = module.params[option]
    if not os.access(path, os.X_OK):
        module.fail_json(msg=f"{os.path.basename(path)} not found or not executable at {path}: "
                             f"install the Ascend driver or set {option}")
    return path


def _npu_info(module: AnsibleModule) -> NpuInfo:
    argv = [_executable(module, "npu_smi_path"), "info"]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"'{' '.join(argv)}' failed with rc={rc}: {(err or out).strip()}")
    try:
        return parse_npu_smi_info(out)
    except ParseError as exc:
        module.fail_json(msg=f"cannot parse the output of '{' '.join(argv)}': {exc}")


def _plan(module: AnsibleModule) -> tuple:
    """Resolve (devices, hardware, checks) from the options, asking npu-smi only when needed."""
    params = module.params
    info = None
    if params["hardware"] == "auto" or (params["devices"] is None and params["device_count"] is None):
        info = _npu_info(module)
    hardware = info.layout if params["hardware"] == "auto" else params["hardware"]
    if params["devices"] is not None:
        devices = params["devices"]
    elif params["device_count"] is not None:
        devices = list(range(params["device_count"]))
    else:
        devices = list(range(info.chip_count))
    bad = [d for d in devices if d < 0 or (info is not None and d >= info.chip_count)]
    if bad or not devices:
        seen = f"npu-smi lists {info.chip_count} logical devices" if info else "ids must be >= 0"
        module.fail_json(msg=f"invalid devices {bad or devices}: {seen}")
    checks = params["checks"] or [c for c in ALL_CHECKS if c != "vnic" or hardware == "a3"]
    if "vnic" in checks and hardware != "a3":
        module.fail_json(msg=f"check 'vnic' needs A3 hardware, but hardware is {hardware}: drop it from checks")
    return devices, hardware, checks


def _query(module: AnsibleModule, tool: str, device: int, check: str) -> Any:
    argv = [tool, "-i", str(device), "-" + check, "-g"]
    cmd = " ".join(argv)
    rc, out, err = module.run_command(argv)
    if rc != 0 and check == "ip" and out.strip().startswith("Get ipconf failed"):
        return parse_ip_records(out)[0]
    if rc != 0:
        module.fail_json(msg=f"device {device}: '{cmd}' failed with rc={rc}: {(err or out).strip()}")
    try:
        return PARSERS[check](out)
    except ParseError as exc:
        module.fail_json(msg=f"device {device}: cannot parse the output of '{cmd}': {exc}")


def _read_conf(module: AnsibleModule) -> Optional[Dict[int, Dict[str, str]]]:
    path = module.params["hccn_conf_path"]
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_hccn_conf(handle.read())
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg=f"cannot read {path}: {exc}")
    except ParseError as exc:
        module.fail_json(msg=f"cannot parse {path}: {exc}")


def _problems(devices: List[Dict[str, Any]], conf: Optional[Dict[int, Dict[str, str]]]) -> List[str]:
    found = []
    for dev in devices:
        name = f"device {dev['device']}"
        if dev.get("link") == "DOWN":
            found.append(f"{name}: link is DOWN (hccn_tool -i {dev['device']} -link -g)")
        if "net_health" in dev and dev["net_health"] != "Success":
            found.append(f"{name}: net health is {dev['net_health']}, expected Success")
        if "ip" in dev and dev["ip"] is None:
            found.append(f"{name}: no IP configured (hccn_tool -i {dev['device']} -ip -s address ...)")
        want = (conf or {}).get(dev["device"], {}).get("address")
        if dev.get("ip") and want and dev["ip"]["ipaddr"] != want:
            found.append(f"{name}: IP {dev['ip']['ipaddr']} differs from hccn.conf address_{dev['device']}={want}")
        if dev.get("vnic", {}).get("link") == "DOWN":
            found.append(f"{name}: vnic link is DOWN")
    switches = {dev["device"]: dev["tls"]["switch"] for dev in devices if "tls" in dev}
    if len(set(switches.values())) > 1:
        found.append(f"TLS switch differs between devices: {switches}")
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "devices": {"type": "list", "elements": "int"},
            "device_count": {"type": "int"},
            "hardware": {"type": "str", "choices": ["auto", "a2", "a3"], "default": "auto"},
            "checks": {"type": "list", "elements": "str", "choices": ALL_CHECKS},
            "hccn_tool_path": {"type": "path", "default": "/usr/local/Ascend/driver/tools/hccn_tool"},
            "npu_smi_path": {"type": "path", "default": "/usr/local/bin/npu-smi"},
            "hccn_conf_path": {"type": "path", "default": "/etc/hccn.conf"},
        },
        mutually_exclusive=[("devices", "device_count")],
        supports_check_mode=True,
    )
    devices, hardware, checks = _plan(module)
    tool = _executable(module, "hccn_tool_path")
    facts = [dict({"device": dev}, **{check: _query(module, tool, dev, check) for check in checks})
             for dev in devices]
    conf = _read_conf(module)
    module.exit_json(
        changed=False,
        hardware=hardware,
        devices=facts,
        hccn_conf_present=conf is not None,
        hccn_conf={str(dev): values for dev, values in (conf or {}).items()},
        problems=_problems(facts, conf),
    )


if __name__ == "__main__":
    main()
