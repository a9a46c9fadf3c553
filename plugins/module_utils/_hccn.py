# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers for ``hccn_tool -i N ... -g`` outputs and ``/etc/hccn.conf``. Stdlib only.

Every parser is strict: a line it does not know raises ParseError quoting the line and
its number. Parsers named ``*_records`` also accept the concatenated output of a shell
loop over several devices (``for i in {0..7}; do hccn_tool -i $i -ip -g; done``).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ansible_collections.ascend_ops.vllm.plugins.module_utils._npu_smi import ParseError

__all__ = [
    "ParseError", "NET_HEALTH_STATES", "parse_link", "parse_net_health", "parse_ip", "parse_ip_records",
    "parse_netdetect", "parse_gateway", "parse_tls", "parse_tls_records", "parse_lldp", "parse_lldp_ifnames", "parse_vnic",
    "parse_ping", "parse_ping_records", "parse_hccn_conf", "PARSERS",
]

NET_HEALTH_STATES = ("Success", "Socket fail", "Receive timeout", "Unreachable", "Time exceeded",
                     "Fault", "Init", "Thread error", "Detect ip set", "Unknown")

_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_LINK_RE = re.compile(r"^link status: (UP|DOWN)$")
_HEALTH_RE = re.compile(r"^net health status: (%s)$" % "|".join(NET_HEALTH_STATES))
_IPADDR_RE = re.compile(rf"^ipaddr:\s*({_IPV4})$")
_NETMASK_RE = re.compile(rf"^netmask:\s*({_IPV4})$")
_NO_IP_RE = re.compile(r"^Get ipconf failed\b")
_NETDETECT_RE = re.compile(rf"^netdetect (?:address|addr):\s*({_IPV4})$")
_GATEWAY_RE = re.compile(rf"^default gateway:\s*({_IPV4}),\s*Iface:\s*(\S+)$")
_TLS_RE = re.compile(r"^dev_id:\s*(\d+),\s*tls switch\[([01])\]\(0:disable, 1:enable\),\s*"
                     r"tls preconfigured\[([01])\]\(0:non-preset, 1:preset\),\s*"
                     r"tls alarm time threshold\[(\d+)\]days$")
_VNIC_RES = (re.compile(r"^vnic link status: (UP|DOWN)$"), re.compile(rf"^vnic ipaddr:\s*({_IPV4})$"),
             re.compile(rf"^vnic netmask:\s*({_IPV4})$"))
_PING_HEAD_RE = re.compile(r"^device (\d+)(?: dev \S+)? PING6? (?:(\S+) to )?(\S+)$")
# seq=O (letter O) appears in published samples where 0 was meant.
_PING_RECV_RE = re.compile(r"^recv seq=([0-9Oo]+),\s*time=(\d+(?:\.\d+)?)\s*ms$")
# A lost packet: real hccn_tool prints this line instead of a recv line.
_PING_LOST_RE = re.compile(r"^recv time out seq=([0-9Oo]+)$")
_PING_SUM_RE = re.compile(r"^(\d+) packets transmitted, (\d+) received, (\d+(?:\.\d+)?)% packet loss$")
_LLDP_TLV_RE = re.compile(r"^(\S.*) TLV$")
_LLDP_IFNAME_RE = re.compile(r"^\s*Ifname:\s*(\S.*)$")
_CONF_RE = re.compile(r"^([a-z][a-z0-9_]*?)_(\d+)\s*=\s*(.*)$")


def _lines(text: str) -> Iterator[Tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, right-stripped."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield lineno, line.rstrip()


def _only(text: str, pattern: re.Pattern, what: str) -> Tuple[str, ...]:
    """Groups of the single line of a one-line output."""
    found: Optional[Tuple[str, ...]] = None
    for lineno, line in _lines(text):
        match = pattern.match(line.strip())
        if match is None:
            raise ParseError(f"unexpected line in {what} output", lineno, line)
        if found is not None:
            raise ParseError(f"{what} output has more than one status line", lineno, line)
        found = match.groups()
    if found is None:
        raise ParseError(f"empty {what} output")
    return found


def _each(text: str, pattern: re.Pattern, what: str) -> List[Tuple[str, ...]]:
    """Groups of every line of a line-per-record output; at least one line."""
    records = []
    for lineno, line in _lines(text):
        match = pattern.match(line.strip())
        if match is None:
            raise ParseError(f"unexpected line in {what} output", lineno, line)
        records.append(match.groups())
    if not records:
        raise ParseError(f"empty {what} output")
    return records


def _exactly_one(records: List[Any], what: str) -> Any:
    if len(records) != 1:
        raise ParseError(f"{what}: expected the output of one device, found {len(records)} records")
    return records[0]


def parse_link(text: str) -> str:
    """``-link -g``: 'UP' or 'DOWN'."""
    return _only(text, _LINK_RE, "-link -g")[0]


def parse_net_health(text: str) -> str:
    """``-net_health -g``: one of NET_HEALTH_STATES ('Success' is the only healthy one)."""
    return _only(text, _HEALTH_RE, "-net_health -g")[0]


def parse_netdetect(text: str) -> str:
    """``-netdetect -g``: the detect address (both 'netdetect address:' and 'netdetect addr:')."""
    return _only(text, _NETDETECT_RE, "-netdetect -g")[0]


def parse_ip_records(text: str) -> List[Optional[Dict[str, str]]]:
    """``-ip -g`` per device: {'ipaddr', 'netmask'}, or None for 'Get ipconf failed' (no IP set)."""
    records: List[Optional[Dict[str, str]]] = []
    pending: Optional[Tuple[int, str, str]] = None
    for lineno, line in _lines(text):
        stripped = line.strip()
        addr, mask = _IPADDR_RE.match(stripped), _NETMASK_RE.match(stripped)
        if pending is None and addr:
            pending = (lineno, line, addr.group(1))
        elif pending is not None and mask:
            records.append({"ipaddr": pending[2], "netmask": mask.group(1)})
            pending = None
        elif pending is None and _NO_IP_RE.match(stripped):
            records.append(None)
        else:
            raise ParseError("unexpected line in -ip -g output (want ipaddr: then netmask:)", lineno, line)
    if pending is not None:
        raise ParseError("ipaddr: without a following netmask: line in -ip -g output", pending[0], pending[1])
    if not records:
        raise ParseError("empty -ip -g output")
    return records


def parse_ip(text: str) -> Optional[Dict[str, str]]:
    """``-ip -g`` of one device."""
    return _exactly_one(parse_ip_records(text), "-ip -g")


def parse_gateway(text: str) -> List[Dict[str, str]]:
    """``-gateway -g``: default routes [{'gateway', 'iface'}]."""
    return [{"gateway": gw, "iface": iface} for gw, iface in _each(text, _GATEWAY_RE, "-gateway -g")]


def parse_tls_records(text: str) -> List[Dict[str, int]]:
    """``-tls -g``: per dev_id the switch (0/1), preconfigured (0/1) and alarm threshold in days."""
    return [
        {"dev_id": int(dev), "switch": int(switch), "preconfigured": int(preset), "alarm_threshold_days": int(days)}
        for dev, switch, preset, days in _each(text, _TLS_RE, "-tls -g")
    ]


def parse_tls(text: str) -> Dict[str, int]:
    """``-tls -g`` of one device."""
    return _exactly_one(parse_tls_records(text), "-tls -g")


def parse_vnic(text: str) -> Dict[str, str]:
    """``-vnic -g`` (A3): link status, ipaddr and netmask, in that order."""
    lines = list(_lines(text))
    if len(lines) != len(_VNIC_RES):
        raise ParseError(f"-vnic -g output: expected 3 lines (link status, ipaddr, netmask), found {len(lines)}",
                         *(lines[len(_VNIC_RES)] if len(lines) > len(_VNIC_RES) else (0, "")))
    values = []
    for (lineno, line), pattern in zip(lines, _VNIC_RES):
        match = pattern.match(line.strip())
        if match is None:
            raise ParseError("unexpected line in -vnic -g output", lineno, line)
        values.append(match.group(1))
    return {"link": values[0], "ipaddr": values[1], "netmask": values[2]}


def _lldp_tlvs(text: str) -> Dict[str, List[Tuple[int, str]]]:
    """TLV name -> its body lines; '...' lines (elisions in published samples) are skipped."""
    tlvs: Dict[str, List[Tuple[int, str]]] = {}
    current: Optional[List[Tuple[int, str]]] = None
    for lineno, line in _lines(text):
        stripped = line.strip()
        header = _LLDP_TLV_RE.match(line)
        if header:
            current = tlvs.setdefault(header.group(1), [])
        elif stripped == "...":
            continue
        elif current is None:
            raise ParseError("-lldp -g output: text before the first TLV header", lineno, line)
        else:
            current.append((lineno, line))
    if not tlvs:
        raise ParseError("empty -lldp -g output")
    return tlvs


def _lldp_field(tlvs: Dict[str, List[Tuple[int, str]]], tlv: str, key: str) -> Optional[str]:
    """Value of 'key: value' inside a TLV ('...' elided values are None); malformed lines raise."""
    for lineno, line in tlvs.get(tlv, []):
        name, sep, value = line.strip().partition(":")
        if not sep or not name.strip():
            raise ParseError(f"-lldp -g {tlv} TLV: expected 'Key: value'", lineno, line)
        if name.strip() == key:
            return None if value.strip() == "..." else value.strip()
    return None


def parse_lldp(text: str) -> Dict[str, Any]:
    """``-lldp -g``: neighbour switch facts; fields the switch did not send are None."""
    tlvs = _lldp_tlvs(text)
    frame = tlvs.get("Maximum Frame Size", [])
    if len(frame) > 1 or (frame and not frame[0][1].strip().isdigit()):
        raise ParseError("-lldp -g Maximum Frame Size TLV: expected one number", *frame[-1])
    description = tlvs.get("System Description", [])
    return {
        "chassis_mac": _lldp_field(tlvs, "Chassis ID", "MAC"),
        "port_ifname": _lldp_field(tlvs, "Port ID", "Ifname"),
        "system_description": "\n".join(line.strip() for _lineno, line in description) or None,
        "mgmt_address": _lldp_field(tlvs, "Management Address", "IPv4"),
        "max_frame_size": int(frame[0][1]) if frame else None,
        "tlvs": sorted(tlvs),
    }


def parse_lldp_ifnames(text: str) -> List[str]:
    """``-lldp -g | grep Ifname`` over several devices: the switch port names, in device order."""
    return [name.strip() for (name,) in _each(text, _LLDP_IFNAME_RE, "-lldp -g Ifname")]


def _new_ping(lineno: int, line: str, match: re.Match) -> Dict[str, Any]:
    return {"device": int(match.group(1)), "source": match.group(2), "address": match.group(3),
            "times_ms": [], "seqs": [], "_at": (lineno, line)}


def _close_ping(ping: Dict[str, Any], summary: re.Match, lineno: int, line: str) -> Dict[str, Any]:
    sent, received, loss = int(summary.group(1)), int(summary.group(2)), float(summary.group(3))
    if received > sent or received != len(ping["times_ms"]):
        raise ParseError(f"ping summary says {received} of {sent} received but {len(ping['times_ms'])} "
                         f"recv lines were printed", lineno, line)
    times = ping.pop("times_ms")
    ping.pop("_at")
    ping.update(sent=sent, received=received, loss_pct=loss, times_ms=times,
                avg_ms=round(sum(times) / len(times), 6) if times else None)
    return ping


def parse_ping_records(text: str) -> List[Dict[str, Any]]:
    """``-ping -g address X``, one record per 'device N PING X' block.

    Each record: device, address, source (None unless printed), seqs, times_ms, sent, received,
    loss_pct and avg_ms (mean of the reply times, None when nothing came back).
    """
    records: List[Dict[str, Any]] = []
    ping: Optional[Dict[str, Any]] = None
    for lineno, line in _lines(text):
        stripped = line.strip()
        head, recv, summary = (_PING_HEAD_RE.match(stripped), _PING_RECV_RE.match(stripped),
                               _PING_SUM_RE.match(stripped))
        if ping is None and head:
            ping = _new_ping(lineno, line, head)
        elif ping is not None and recv:
            ping["seqs"].append(int(recv.group(1).replace("O", "0").replace("o", "0")))
            ping["times_ms"].append(float(recv.group(2)))
        elif ping is not None and _PING_LOST_RE.match(stripped):
            continue
        elif ping is not None and summary:
            records.append(_close_ping(ping, summary, lineno, line))
            ping = None
        else:
            raise ParseError("unexpected line in -ping -g output", lineno, line)
    if ping is not None:
        raise ParseError("ping block without its 'packets transmitted' summary", *ping["_at"])
    if not records:
        raise ParseError("empty -ping -g output")
    return records


def parse_ping(text: str) -> Dict[str, Any]:
    """``-ping -g`` of one device and one address."""
    return _exactly_one(parse_ping_records(text), "-ping -g")


def parse_hccn_conf(text: str) -> Dict[int, Dict[str, str]]:
    """``/etc/hccn.conf``: {device: {key: value}} from ``key_N=value`` lines; '#' comments allowed."""
    devices: Dict[int, Dict[str, str]] = {}
    for lineno, line in _lines(text):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        match = _CONF_RE.match(stripped)
        if match is None:
            raise ParseError("hccn.conf: expected 'key_N=value'", lineno, line)
        key, device, value = match.group(1), int(match.group(2)), match.group(3).strip()
        entry = devices.setdefault(device, {})
        if key in entry:
            raise ParseError(f"hccn.conf: {key}_{device} set twice", lineno, line)
        entry[key] = value
    return devices


PARSERS: Dict[str, Callable[[str], Any]] = {
    "link": parse_link,
    "net_health": parse_net_health,
    "ip": parse_ip,
    "netdetect": parse_netdetect,
    "gateway": parse_gateway,
    "tls": parse_tls,
    "lldp": parse_lldp,
    "vnic": parse_vnic,
}
