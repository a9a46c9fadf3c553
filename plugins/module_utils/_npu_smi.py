# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parser for ``npu-smi info`` (A2: one chip per NPU, A3: two chips per card). Stdlib only."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

LAYOUT_A2 = "a2"
LAYOUT_A3 = "a3"

_BORDER_RE = re.compile(r"^\+[-=+]+\+$")
_VERSION_RE = re.compile(r"^npu-smi\s+(\S+)\s+Version:\s+(\S+)$")
_HEADER1_RE = re.compile(r"^NPU\s+Name\|Health\|Power\(W\)\s+Temp\(C\)\s+Hugepages-Usage\(page\)$")
_HEADER2 = {
    r"^Chip\|Bus-Id\|AICore\(%\)\s+Memory-Usage\(MB\)\s+HBM-Usage\(MB\)$": LAYOUT_A2,
    r"^Chip\s+Phy-ID\|Bus-Id\|AICore\(%\)\s+Memory-Usage\(MB\)\s+HBM-Usage\(MB\)$": LAYOUT_A3,
}
_PROC_HEADER_RE = re.compile(r"^NPU\s+Chip\|Process id\|Process name\|Process memory\(MB\)$")
_NO_PROC_RE = re.compile(r"^No running processes found in NPU (\d+)$")
_ROW1_CELLS = (re.compile(r"^(\d+)\s+(\S+)$"), re.compile(r"^([A-Za-z_]+)$"),
               re.compile(r"^(-|\d+(?:\.\d+)?)\s+(\d+)\s+(\d+)\s*/\s*(\d+)$"))
_ROW2_ID = {LAYOUT_A2: re.compile(r"^(\d+)$"), LAYOUT_A3: re.compile(r"^(\d+)\s+(\d+)$")}
_ROW2_CELLS = (re.compile(r"^([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])$"),
               re.compile(r"^(\d+)\s+(\d+)\s*/\s*(\d+)\s+(\d+)\s*/\s*(\d+)$"))
_PROC_CELLS = (re.compile(r"^(\d+)\s+(\d+)$"), re.compile(r"^(\d+)$"), re.compile(r"^(\S.*)$"),
               re.compile(r"^(\d+)$"))


class ParseError(ValueError):
    """Output that does not match the known layout; the message quotes the line."""

    def __init__(self, reason: str, lineno: int = 0, line: str = "") -> None:
        where = f" at line {lineno}: {line.rstrip()!r}" if lineno else ""
        super().__init__(f"{reason}{where}")
        self.lineno = lineno
        self.line = line


@dataclass
class Chip:
    """One logical device (a chip) as listed by ``npu-smi info``; logical_id is its table order."""

    logical_id: int
    npu_id: int
    chip_id: int
    phy_id: Optional[int]
    name: str
    health: str
    power_w: Optional[float]
    temp_c: int
    aicore_pct: int
    hbm_used_mb: int
    hbm_total_mb: int
    bus_id: str


@dataclass
class Process:
    """One process holding NPU memory."""

    npu_id: int
    chip_id: int
    pid: int
    name: str
    memory_mb: int


@dataclass
class NpuInfo:
    """The parsed ``npu-smi info`` table."""

    layout: str
    version: str
    chips: List[Chip] = field(default_factory=list)
    processes: List[Process] = field(default_factory=list)

    @property
    def npu_count(self) -> int:
        """Number of cards (distinct NPU ids)."""
        return len({chip.npu_id for chip in self.chips})

    @property
    def chip_count(self) -> int:
        """Number of logical devices (what ``hccn_tool -i N`` and ASCEND_RT_VISIBLE_DEVICES count)."""
        return len(self.chips)

    def as_facts(self) -> Dict[str, Any]:
        """Plain dict for module results."""
        return {
            "layout": self.layout,
            "version": self.version,
            "npu_count": self.npu_count,
            "chip_count": self.chip_count,
            "chips": [asdict(chip) for chip in self.chips],
            "processes": [asdict(proc) for proc in self.processes],
        }


def _cells(line: str, lineno: int) -> List[str]:
    body = line.strip()
    if not (body.startswith("|") and body.endswith("|")):
        raise ParseError("not a table row or border of npu-smi info", lineno, line)
    return [cell.strip() for cell in body[1:-1].split("|")]


def _match_cells(cells: List[str], patterns: Tuple[re.Pattern, ...], what: str,
                 lineno: int, line: str) -> List[Tuple[str, ...]]:
    if len(cells) != len(patterns):
        raise ParseError(f"{what}: expected {len(patterns)} cells, found {len(cells)}", lineno, line)
    groups = []
    for cell, pattern in zip(cells, patterns):
        match = pattern.match(cell)
        if match is None:
            raise ParseError(f"{what}: unexpected cell {cell!r}", lineno, line)
        groups.append(match.groups())
    return groups


class _Parser:
    """Line-by-line state machine over the npu-smi info table."""

    def __init__(self) -> None:
        self.state = "version"
        self.version = ""
        self.layout = ""
        self.pending: Optional[Tuple[int, Tuple[str, ...], Tuple[str, ...], int, str]] = None
        self.chips: List[Chip] = []
        self.processes: List[Process] = []

    def feed(self, lineno: int, line: str) -> None:
        if _BORDER_RE.match(line.strip()):
            if self.pending is not None:
                raise ParseError("chip row without its second line", *self.pending[3:])
            return
        cells = _cells(line, lineno)
        joined = "|".join(cells)
        getattr(self, "_on_" + self.state)(cells, joined, lineno, line)

    def _on_version(self, cells: List[str], joined: str, lineno: int, line: str) -> None:
        match = _VERSION_RE.match(joined)
        if match is None:
            raise ParseError("expected the 'npu-smi X Version: X' title row", lineno, line)
        self.version = match.group(2)
        self.state = "header1"

    def _on_header1(self, cells: List[str], joined: str, lineno: int, line: str) -> None:
        if not _HEADER1_RE.match(joined):
            raise ParseError("unknown npu-smi info layout (first header row)", lineno, line)
        self.state = "header2"

    def _on_header2(self, cells: List[str], joined: str, lineno: int, line: str) -> None:
        for pattern, layout in _HEADER2.items():
            if re.match(pattern, joined):
                self.layout = layout
                self.state = "chips"
                return
        raise ParseError("unknown npu-smi info layout (second header row)", lineno, line)

    def _on_chips(self, cells: List[str], joined: str, lineno: int, line: str) -> None:
        if _PROC_HEADER_RE.match(joined):
            if self.pending is not None:
                raise ParseError("chip row without its second line", *self.pending[3:])
            self.state = "processes"
            return
        if self.pending is None:
            first = _match_cells(cells, _ROW1_CELLS, "chip row (NPU Name | Health | Power Temp)", lineno, line)
            self.pending = (int(first[0][0]), first[0] + first[1], first[2], lineno, line)
            return
        npu_id, name_health, power_temp = self.pending[:3]
        ident = _ROW2_ID[self.layout].match(cells[0]) if cells else None
        if ident is None:
            raise ParseError(f"{self.layout.upper()} chip id cell does not match the header", lineno, line)
        second = _match_cells(cells[1:], _ROW2_CELLS, "chip row (Bus-Id | AICore Memory HBM)", lineno, line)
        usage = second[1]
        chip_id = int(ident.group(1))
        if any(chip.npu_id == npu_id and chip.chip_id == chip_id for chip in self.chips):
            raise ParseError(f"NPU {npu_id} chip {chip_id} listed twice", lineno, line)
        self.chips.append(Chip(
            logical_id=len(self.chips),
            npu_id=npu_id,
            chip_id=chip_id,
            phy_id=int(ident.group(2)) if self.layout == LAYOUT_A3 else None,
            name=name_health[1],
            health=name_health[2],
            power_w=None if power_temp[0] == "-" else float(power_temp[0]),
            temp_c=int(power_temp[1]),
            aicore_pct=int(usage[0]),
            hbm_used_mb=int(usage[3]),
            hbm_total_mb=int(usage[4]),
            bus_id=second[0][0],
        ))
        self.pending = None

    def _on_processes(self, cells: List[str], joined: str, lineno: int, line: str) -> None:
        if _NO_PROC_RE.match(joined):
            return
        got = _match_cells(cells, _PROC_CELLS, "process row (NPU Chip | pid | name | memory)", lineno, line)
        self.processes.append(Process(npu_id=int(got[0][0]), chip_id=int(got[0][1]), pid=int(got[1][0]),
                                      name=got[2][0], memory_mb=int(got[3][0])))

    def finish(self, last_lineno: int) -> NpuInfo:
        if self.pending is not None:
            raise ParseError("chip row without its second line", *self.pending[3:])
        if not self.layout:
            raise ParseError(f"incomplete npu-smi info output: the chip table header never came "
                             f"(stopped in state {self.state!r} after {last_lineno} lines)")
        if not self.chips:
            raise ParseError("npu-smi info lists no chip: is the driver loaded and are devices visible?")
        return NpuInfo(layout=self.layout, version=self.version, chips=self.chips, processes=self.processes)


def parse_npu_smi_info(text: str) -> NpuInfo:
    """Parse ``npu-smi info``; raise ParseError naming the first line that does not fit."""
    parser = _Parser()
    lineno = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            parser.feed(lineno, line)
    return parser.finish(lineno)
