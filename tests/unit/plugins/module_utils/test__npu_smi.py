"""Unit tests of the npu-smi info parser against every fixture under tests/unit/fixtures/npu_smi."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.ascend_ops.vllm.plugins.module_utils._npu_smi import ParseError, parse_npu_smi_info

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "npu_smi"
A2_BUS = ["C1", "C2", "81", "82", "01", "02", "41", "42"]
A3_BUS = ["9D", "9F", "99", "9B", "B9", "BB", "B5", "B7", "01", "03", "05", "07", "41", "43", "45", "47"]


def a2_chip(n, power, temp, hbm, bus, health="OK", aicore=0):
    return {"logical_id": n, "npu_id": n, "chip_id": 0, "phy_id": None, "name": "910B3", "health": health,
            "power_w": power, "temp_c": temp, "aicore_pct": aicore, "hbm_used_mb": hbm, "hbm_total_mb": 65536,
            "bus_id": f"0000:{bus}:00.0"}


def a2_full(health=None, power=None, aicore=None, hbm=None):
    health, power, aicore, hbm = health or {}, power or {}, aicore or {}, hbm or {}
    return [a2_chip(n, power.get(n, round(95.0 + n * 1.3, 1)), 50 + n, hbm.get(n, 3300 + n), A2_BUS[n],
                    health.get(n, "OK"), aicore.get(n, 0)) for n in range(8)]


def a3_chip(npu, chip, power, temp, hbm, bus):
    lid = 2 * npu + chip
    return {"logical_id": lid, "npu_id": npu, "chip_id": chip, "phy_id": lid, "name": "Ascend910", "health": "OK",
            "power_w": power, "temp_c": temp, "aicore_pct": 0, "hbm_used_mb": hbm, "hbm_total_mb": 65536,
            "bus_id": f"0000:{bus}:00.0"}


def proc(npu, pid, name, mem):
    return {"npu_id": npu, "chip_id": 0, "pid": pid, "name": name, "memory_mb": mem}


EXPECTED = {
    "info_a2_910b3_partial.txt": {
        "layout": "a2", "version": "23.0.7", "npu_count": 2, "chip_count": 2, "processes": [],
        "chips": [a2_chip(0, 102.8, 55, 3338, "C1"), a2_chip(1, 97.6, 54, 3337, "C2")],
    },
    "info_a3_partial.txt": {
        "layout": "a3", "version": "25.2.1", "npu_count": 2, "chip_count": 4, "processes": [],
        "chips": [a3_chip(0, 0, 161.8, 36, 3122, "9D"), a3_chip(0, 1, None, 36, 2891, "9F"),
                  a3_chip(1, 0, 167.2, 36, 3124, "99"), a3_chip(1, 1, None, 36, 2888, "9B")],
    },
    "info_a2_910b3_full.txt": {
        "layout": "a2", "version": "23.0.7", "npu_count": 8, "chip_count": 8, "processes": [],
        "chips": a2_full(),
    },
    "info_a3_full.txt": {
        "layout": "a3", "version": "25.2.1", "npu_count": 8, "chip_count": 16, "processes": [],
        "chips": [a3_chip(n, c, 160.0 + n if c == 0 else None, 35 + n, 2800 + 2 * n + c, A3_BUS[2 * n + c])
                  for n in range(8) for c in range(2)],
    },
    "info_a2_processes.txt": {
        "layout": "a2", "version": "23.0.7", "npu_count": 8, "chip_count": 8,
        "chips": a2_full(aicore={n: 35 + n for n in range(8)}, hbm={n: 61000 + 10 * n for n in range(8)}),
        "processes": [proc(0, 241300, "VLLM::EngineCore", 58000)]
        + [proc(n, 241300 + n, "python3.11", 58000 + n) for n in range(1, 8)]
        + [proc(0, 241399, "python3.11", 1024)],
    },
    "info_a2_unhealthy.txt": {
        "layout": "a2", "version": "23.0.7", "npu_count": 8, "chip_count": 8, "processes": [],
        "chips": a2_full(health={3: "Warning", 6: "Alarm"}, power={6: None}),
    },
}

MALFORMED = {
    "info_bad_dcmi_error.txt": (1, "not a table row or border", "dcmi model initialized failed"),
    "info_bad_310p_layout.txt": (5, "unknown npu-smi info layout (second header row)", "Chip  Device"),
    "info_bad_truncated.txt": (10, "chip row without its second line", "| 1     910B3"),
    "info_bad_hbm_cell.txt": (11, "unexpected cell", "N/A  / 65536"),
    "info_bad_chip_id.txt": (8, "A2 chip id cell does not match the header", "| x "),
}


def test_every_fixture_has_expectations():
    names = {path.name for path in FIXTURES.iterdir()}
    assert names == set(EXPECTED) | set(MALFORMED) | {"info_bad_no_chips.txt"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_fixture(name):
    info = parse_npu_smi_info((FIXTURES / name).read_text())
    assert info.as_facts() == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_fixture_quotes_line(name):
    lineno, reason, quoted = MALFORMED[name]
    text = (FIXTURES / name).read_text()
    with pytest.raises(ParseError) as exc:
        parse_npu_smi_info(text)
    assert exc.value.lineno == lineno
    assert exc.value.line == text.splitlines()[lineno - 1]
    assert reason in str(exc.value) and quoted in str(exc.value) and f"line {lineno}:" in str(exc.value)


@pytest.mark.parametrize("text, reason", [
    ((FIXTURES / "info_bad_no_chips.txt").read_text(), "lists no chip"),
    ("", "the chip table header never came"),
    ("\n\n", "the chip table header never came"),
])
def test_no_chip_is_an_error_not_zero(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_npu_smi_info(text)


def test_duplicate_chip_rejected():
    lines = (FIXTURES / "info_a2_910b3_partial.txt").read_text().splitlines()
    lines[9] = lines[6]  # NPU 1 row becomes a second NPU 0 row
    with pytest.raises(ParseError, match=r"NPU 0 chip 0 listed twice at line 11"):
        parse_npu_smi_info("\n".join(lines))


def test_a2_row_under_a3_header_rejected():
    a3 = (FIXTURES / "info_a3_partial.txt").read_text().splitlines()
    a2 = (FIXTURES / "info_a2_910b3_partial.txt").read_text().splitlines()
    with pytest.raises(ParseError, match=r"A3 chip id cell does not match the header at line 8"):
        parse_npu_smi_info("\n".join(a3[:7] + a2[7:8]))


def test_bad_process_row_rejected():
    lines = (FIXTURES / "info_a2_processes.txt").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if "241303" in line)
    lines[row] = lines[row].replace("58003", "?????")
    with pytest.raises(ParseError, match=rf"process row .* at line {row + 1}: .*\?\?\?\?\?"):
        parse_npu_smi_info("\n".join(lines))


def test_bad_health_word_rejected():
    lines = (FIXTURES / "info_a2_910b3_partial.txt").read_text().splitlines()
    lines[6] = lines[6].replace("OK  ", "O K ")
    with pytest.raises(ParseError, match=r"unexpected cell 'O K' at line 7"):
        parse_npu_smi_info("\n".join(lines))
