"""NPU state file: schema, defaults, loading, and the fault-injection CLI.

The schema is documented in README.md. Fault injection is editing this file,
e.g. ``ascend-sim-state --npu 2 link DOWN``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_STATE = "/etc/ascend-sim/npu.json"
HARDWARE = {
    "a2": {"chip_name": "910B3", "driver_version": "23.0.7", "npu_count": 8},
    "a3": {"chip_name": "Ascend910", "driver_version": "25.2.1", "npu_count": 16},
}
CHOICES = {
    "link": ("UP", "DOWN"),
    "net_health": ("Success", "Init", "Fault", "Unknown"),
    "health": ("OK", "Warning", "Alarm", "Critical"),
    "tls": (0, 1),
    "hardware": tuple(HARDWARE),
}
INT_KEYS = {"tls", "hbm_total_mb", "hbm_used_mb", "temp_c", "npu_count", "held_hbm_mb"}
DEVICE_KEYS = {
    "ip", "netmask", "gateway", "netdetect", "link", "net_health", "tls", "lldp_ifname",
    "vnic_ip", "vnic_netmask", "hbm_total_mb", "hbm_used_mb", "health", "bus_id",
    "power_w", "temp_c",
}
TOP_KEYS = {"hardware", "driver_version", "chip_name", "npu_count", "held_hbm_mb"}


class StateError(Exception):
    """The state file is missing or invalid."""


def state_path() -> Path:
    """Path of this machine's state file (env VLLM_SIM_STATE)."""
    return Path(os.environ.get("VLLM_SIM_STATE", DEFAULT_STATE))


def _bus_id(hardware: str, idx: int) -> str:
    if hardware == "a2":
        base = (0xC1, 0xC2, 0x81, 0x82, 0x01, 0x02, 0x41, 0x42)
        return f"0000:{base[idx % 8]:02X}:00.0"
    base = (0x9D, 0x9F, 0x99, 0x9B, 0xB9, 0xBB, 0xB5, 0xB7)
    return f"0000:{base[idx % 8] + 0x20 * (idx // 8) & 0xFF:02X}:00.0"


def default_device(hardware: str, idx: int, ip: str | None, netmask: str) -> dict[str, Any]:
    """One device with healthy defaults."""
    gateway = str(ipaddress.ip_network(f"{ip}/{netmask}", strict=False)[1]) if ip else ""
    dev: dict[str, Any] = {
        "ip": ip or "", "netmask": netmask if ip else "", "gateway": gateway, "netdetect": gateway,
        "link": "UP", "net_health": "Success", "tls": 0,
        "lldp_ifname": f"400GE1/{idx // 2 + 1}/5:{idx % 2 + 1}",
        "hbm_total_mb": 65536, "hbm_used_mb": 3300 - 40 * (idx % 4), "health": "OK",
        "bus_id": _bus_id(hardware, idx), "power_w": f"{95.0 + idx * 1.3:.1f}", "temp_c": 40 + idx % 10,
    }
    if hardware == "a3":
        dev["vnic_ip"] = f"192.168.2.{100 + idx}"
        dev["vnic_netmask"] = "255.255.255.0"
    return dev


def default_state(hardware: str, npu_count: int | None = None, ip_base: str | None = None,
                  netmask: str = "255.255.255.0") -> dict[str, Any]:
    """A complete healthy state; device i gets ip_base + i when ip_base is given."""
    hw = HARDWARE[hardware]
    count = npu_count if npu_count is not None else hw["npu_count"]
    if hardware == "a3" and count % 2:
        raise StateError(f"A3 npu_count must be even (2 chips per card), got {count}")
    base = ipaddress.ip_address(ip_base) if ip_base else None
    devices = [default_device(hardware, i, str(base + i) if base else None, netmask) for i in range(count)]
    return {"hardware": hardware, "driver_version": hw["driver_version"], "chip_name": hw["chip_name"],
            "npu_count": count, "held_hbm_mb": 50000, "devices": devices}


def load(path: Path | None = None) -> dict[str, Any]:
    """Load and sanity-check the state file."""
    path = path or state_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(f"NPU state file {path} not found: this machine has no (simulated) NPU driver; "
                         "create it with `ascend-sim-state init` or set VLLM_SIM_STATE") from None
    except json.JSONDecodeError as err:
        raise StateError(f"NPU state file {path} is not valid JSON: {err}") from None
    if data.get("hardware") not in HARDWARE:
        raise StateError(f"{path}: hardware must be one of {sorted(HARDWARE)}, got {data.get('hardware')!r}")
    if len(data.get("devices", [])) != data.get("npu_count"):
        raise StateError(f"{path}: npu_count={data.get('npu_count')} but {len(data.get('devices', []))} devices listed")
    return data


def save(data: dict[str, Any], path: Path | None = None) -> None:
    """Write atomically (readers never see a half-written file)."""
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".npu-state-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def coerce(key: str, value: str) -> Any:
    """Convert a CLI value to the schema type, validating enumerations."""
    if key not in DEVICE_KEYS | TOP_KEYS:
        raise StateError(f"unknown key {key!r}; device keys: {sorted(DEVICE_KEYS)}, global keys: {sorted(TOP_KEYS)}")
    out: Any = int(value) if key in INT_KEYS else value
    if key in CHOICES:
        allowed = CHOICES[key]
        match = [c for c in allowed if str(c).lower() == str(out).lower()]
        if not match:
            raise StateError(f"{key} must be one of {list(allowed)}, got {value!r}")
        out = match[0]
    return out


def set_value(data: dict[str, Any], key: str, value: str, npu: int | None) -> None:
    """Set a global key, or a device key on one NPU (npu given) or on all NPUs."""
    val = coerce(key, value)
    if key in TOP_KEYS:
        if npu is not None:
            raise StateError(f"{key} is a global key; drop --npu")
        data[key] = val
        return
    targets = range(data["npu_count"]) if npu is None else [npu]
    for idx in targets:
        if not 0 <= idx < data["npu_count"]:
            raise StateError(f"NPU {idx} does not exist (npu_count={data['npu_count']})")
        data["devices"][idx][key] = val


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ascend-sim-state", description="Edit the simulated NPU state file.")
    parser.add_argument("--state", type=Path, default=None, help="state file (default $VLLM_SIM_STATE or "
                        f"{DEFAULT_STATE})")
    sub = parser.add_subparsers(dest="cmd", required=True)
    init = sub.add_parser("init", help="write a healthy default state")
    init.add_argument("--hardware", choices=sorted(HARDWARE), default="a3")
    init.add_argument("--npu-count", type=int, default=None)
    init.add_argument("--ip-base", default=None, help="IP of NPU 0; NPU i gets ip-base + i")
    init.add_argument("--netmask", default="255.255.255.0")
    sub.add_parser("show", help="print the state JSON")
    setp = sub.add_parser("set", help="set KEY VALUE (on one NPU with --npu, else globally / on all NPUs)")
    setp.add_argument("--npu", type=int, default=None)
    setp.add_argument("key")
    setp.add_argument("value")
    return parser


def _normalise_argv(argv: list[str]) -> list[str]:
    """Accept the short form ``[--state P] [--npu N] KEY VALUE`` as ``set``."""
    positional = [a for i, a in enumerate(argv) if not a.startswith("-")
                  and (i == 0 or argv[i - 1] not in ("--state", "--npu"))]
    if positional and positional[0] not in ("init", "show", "set") and "-h" not in argv:
        out, rest, i = [], [], 0
        while i < len(argv):
            if argv[i] == "--state":
                out += argv[i:i + 2]
                i += 2
            else:
                rest.append(argv[i])
                i += 1
        return out + ["set"] + rest
    return argv


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = _parser().parse_args(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    path = args.state or state_path()
    try:
        if args.cmd == "init":
            save(default_state(args.hardware, args.npu_count, args.ip_base, args.netmask), path)
        elif args.cmd == "show":
            print(json.dumps(load(path), indent=2))
        else:
            data = load(path)
            set_value(data, args.key, args.value, args.npu)
            save(data, path)
    except (StateError, ValueError) as err:
        print(f"ascend-sim-state: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
