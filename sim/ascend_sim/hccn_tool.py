"""Fake ``hccn_tool``: ``hccn_tool -i N -<cmd> -g [args]`` from the state file.

``-ping`` is a real reachability test from the device IP: ``ping -I <device ip>``
when ping is installed, else a TCP connect probe (port 7) bound to the device IP,
where an answer of any kind (accept or refuse) counts as a reply.
"""

from __future__ import annotations

import errno
import re
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from ascend_sim import state

PROBE_PORT = 7
LOST = -1.0


class ToolError(Exception):
    """A failure printed on stdout with a non-zero exit, as the real tool does."""


def _link(dev: dict[str, Any], _idx: int, _args: dict[str, str], _hw: str) -> str:
    return f"link status: {dev['link']}"


def _net_health(dev: dict[str, Any], _idx: int, _args: dict[str, str], _hw: str) -> str:
    return f"net health status: {dev['net_health']}"


def _ip(dev: dict[str, Any], _idx: int, _args: dict[str, str], _hw: str) -> str:
    if not dev.get("ip"):
        raise ToolError("Get ipconf failed")
    return f"ipaddr:{dev['ip']}\nnetmask:{dev['netmask']}"


def _gateway(dev: dict[str, Any], idx: int, _args: dict[str, str], _hw: str) -> str:
    if not dev.get("gateway"):
        raise ToolError("Get gateway failed")
    return f"default gateway:{dev['gateway']}, Iface:eth{idx}"


def _netdetect(dev: dict[str, Any], _idx: int, _args: dict[str, str], _hw: str) -> str:
    if not dev.get("netdetect"):
        raise ToolError("Get netdetect address failed")
    return f"netdetect address: {dev['netdetect']}"


def _tls(dev: dict[str, Any], idx: int, _args: dict[str, str], _hw: str) -> str:
    return (f"dev_id:{idx}, tls switch[{dev['tls']}](0:disable, 1:enable), tls preconfigured[1]"
            "(0:non-preset, 1:preset), tls alarm time threshold[60]days")


def _lldp(dev: dict[str, Any], idx: int, _args: dict[str, str], _hw: str) -> str:
    if dev["link"] != "UP":
        raise ToolError("Get lldp info failed, link is down")
    return "\n".join([
        "Chassis ID TLV", f"\tMAC: 38:4c:4f:{idx:02x}:a0:01",
        "Port ID TLV", f"\tIfname: {dev['lldp_ifname']}",
        "System Description TLV", "\tVersatile Routing Platform Software",
        "VRP (R) software, Version 8.211 (DX511 V200R021C10SPC600)", "", "Huarong DX511", "",
        "System Capabilities TLV", "\tEnabled capabilities: Bridge, Router",
        "Management Address TLV", f"\tIPv4: {dev.get('gateway') or '0.0.0.0'}",
        "Maximum Frame Size TLV", "\t9216", "End of LLDPDU TLV",
    ])


def _vnic(dev: dict[str, Any], _idx: int, _args: dict[str, str], hw: str) -> str:
    if hw != "a3":
        raise ToolError("vnic is not supported on this chip type")
    return f"vnic link status: UP\nvnic ipaddr: {dev['vnic_ip']}\nvnic netmask: {dev['vnic_netmask']}"


def _ping_system(src: str, dst: str, count: int) -> list[float]:
    """RTTs in ms (LOST for no reply) from the system ping bound to src."""
    proc = subprocess.run(["ping", "-n", "-c", str(count), "-W", "1", "-i", "0.2", "-I", src, dst],
                          capture_output=True, text=True, check=False)
    got = {int(m[1]): float(m[2]) for m in re.finditer(r"icmp_seq=(\d+).*?time=([\d.]+) ms", proc.stdout)}
    return [got.get(seq + 1, LOST) for seq in range(count)]


def _require_local(src: str) -> None:
    """Fail like the real tool when the device IP is not an address of this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((src, 0))
        except OSError as err:
            raise ToolError(f"device ip {src} is not configured on this host: {err.strerror}") from None


def _probe_once(src: str, dst: str) -> float:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.bind((src, 0))
    except OSError as err:
        sock.close()
        raise ToolError(f"device ip {src} is not configured on this host: {err.strerror}") from None
    start = time.perf_counter()
    try:
        code = sock.connect_ex((dst, PROBE_PORT))
    except OSError:
        code = errno.ETIMEDOUT
    finally:
        sock.close()
    if code in (0, errno.ECONNREFUSED):
        return (time.perf_counter() - start) * 1000
    return LOST


def _ping_tcp(src: str, dst: str, count: int) -> list[float]:
    """RTTs in ms from a TCP connect probe bound to src."""
    return [_probe_once(src, dst) for _probe in range(count)]


def _ping(dev: dict[str, Any], idx: int, args: dict[str, str], _hw: str) -> str:
    if "address" not in args:
        raise ToolError("Usage: hccn_tool -i <id> -ping -g address <ip> [pkt <num>]")
    dst, count = args["address"], int(args.get("pkt", "3"))
    if not dev.get("ip"):
        raise ToolError("Get ipconf failed")
    if dev["link"] != "UP" or dev["net_health"] != "Success":
        rtts = [LOST] * count
    else:
        _require_local(dev["ip"])
        rtts = (_ping_system if shutil.which("ping") else _ping_tcp)(dev["ip"], dst, count)
    lines = [f"device {idx} PING {dst}"]
    for seq, rtt in enumerate(rtts):
        lines.append(f"recv seq={seq},time={rtt:.6f}ms" if rtt != LOST else f"recv time out seq={seq}")
    received = sum(1 for r in rtts if r != LOST)
    loss = 100.0 * (count - received) / count if count else 0.0
    lines.append(f"{count} packets transmitted, {received} received, {loss:.2f}% packet loss")
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[dict[str, Any], int, dict[str, str], str], str]] = {
    "link": _link, "net_health": _net_health, "ip": _ip, "gateway": _gateway, "netdetect": _netdetect,
    "tls": _tls, "lldp": _lldp, "vnic": _vnic, "ping": _ping,
}
USAGE = "Usage: hccn_tool -i <device_id> -{" + "|".join(COMMANDS) + "} -g [key value ...]"


def run(argv: list[str], data: dict[str, Any]) -> str:
    """Run one command; return stdout text or raise ToolError."""
    if len(argv) < 4 or argv[0] != "-i" or argv[3] != "-g" or argv[2][1:] not in COMMANDS:
        raise ToolError(USAGE)
    try:
        idx = int(argv[1])
    except ValueError:
        raise ToolError(f"Invalid device id [{argv[1]}], it must be an integer") from None
    if not 0 <= idx < data["npu_count"]:
        raise ToolError(f"Invalid device id [{idx}], valid device ids are 0-{data['npu_count'] - 1}")
    extra = argv[4:]
    if len(extra) % 2:
        raise ToolError(USAGE)
    options = dict(zip(extra[::2], extra[1::2]))
    return COMMANDS[argv[2][1:]](data["devices"][idx], idx, options, data["hardware"])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        out = run(args, state.load())
    except state.StateError as err:
        print(f"hccn_tool: dsmi init failed: {err}")
        return 1
    except ToolError as err:
        print(err)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
