"""Fake ``npu-smi``: ``npu-smi info`` in the A2 and A3 table layouts, from the state file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ascend_sim import devices, state

WIDTH = 96
FULL_DASH = "+" + "-" * WIDTH + "+"
COL_DASH = "+" + "-" * 27 + "+" + "-" * 15 + "+" + "-" * 52 + "+"
COL_EQ = "+" + "=" * 27 + "+" + "=" * 15 + "+" + "=" * 52 + "+"


def _wide(text: str) -> str:
    return f"| {text:<{WIDTH - 1}}|"


def _cols(first: str, second: str, third: str) -> str:
    return f"| {first:<26}| {second:<14}| {third:<51}|"


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "python3"
    except OSError:
        return "python3"


def _header(data: dict[str, Any]) -> list[str]:
    ver = data["driver_version"]
    chip_title = "Chip  Phy-ID" if data["hardware"] == "a3" else "Chip"
    return [
        FULL_DASH,
        _wide(f"npu-smi {ver:<25}Version: {ver}"),
        COL_DASH,
        _cols("NPU   Name", "Health", "Power(W)    Temp(C)           Hugepages-Usage(page)"),
        _cols(chip_title, "Bus-Id", "AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)"),
        COL_EQ,
    ]


def _device_rows(data: dict[str, Any], idx: int, held: dict[int, int]) -> list[str]:
    dev = data["devices"][idx]
    a3 = data["hardware"] == "a3"
    card, chip = (idx // 2, idx % 2) if a3 else (idx, 0)
    used = dev["hbm_used_mb"] + (data.get("held_hbm_mb", 50000) if idx in held else 0)
    used = min(used, dev["hbm_total_mb"])
    power = "-" if a3 and chip == 1 else str(dev["power_w"])
    first = f"{card:<6}{data['chip_name']}"
    second = f"{chip:<6}{idx}" if a3 else str(chip)
    return [
        _cols(first, dev["health"], f"{power:<12}{dev['temp_c']:<18}{0:<4} / {0}"),
        _cols(second, dev["bus_id"], f"{0:<12}{0:<4} / {0:<11}{used:<4} / {dev['hbm_total_mb']}"),
    ]


def _process_rows(data: dict[str, Any], held: dict[int, int]) -> list[str]:
    a3 = data["hardware"] == "a3"
    per_card = 2 if a3 else 1
    rows = [COL_DASH, "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |",
            COL_EQ]
    for card in range(data["npu_count"] // per_card):
        chips = [card * per_card + c for c in range(per_card)]
        busy = [i for i in chips if i in held]
        if not busy:
            rows.append(_wide(f"No running processes found in NPU {card}"))
        for idx in busy:
            pid = held[idx]
            rows.append(f"| {card:<8}{idx % per_card if a3 else 0:<18}| {pid:<14}| {_process_name(pid):<25}| "
                        f"{data.get('held_hbm_mb', 50000):<24}|")
        rows.append(COL_EQ)
    return rows


def render_info(data: dict[str, Any], held: dict[int, int]) -> str:
    """The full ``npu-smi info`` text."""
    lines = _header(data)
    a3 = data["hardware"] == "a3"
    for idx in range(data["npu_count"]):
        lines += _device_rows(data, idx, held)
        lines.append(FULL_DASH if a3 and idx % 2 == 0 else COL_EQ)
    lines += _process_rows(data, held)
    return "\n".join(lines) + "\n"


USAGE = """Usage: npu-smi info          Show the NPU summary table.
"""


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["info"]:
        sys.stderr.write(f"Error: unsupported command {' '.join(args)!r} in the simulator.\n{USAGE}")
        return 1
    try:
        data = state.load()
    except state.StateError as err:
        sys.stderr.write(f"dcmi module initialize failed. ret is -8005 ({err})\n")
        return 1
    sys.stdout.write(render_info(data, devices.holders(data["npu_count"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
