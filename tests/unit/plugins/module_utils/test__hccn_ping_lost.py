"""hccn_tool -ping with lost packets prints 'recv time out seq=N' lines (seen on the simulator, as on real drivers)."""

from __future__ import annotations

import pytest

from ansible_collections.ascend_ops.vllm.plugins.module_utils._hccn import ParseError, parse_ping

ALL_LOST = """device 2 PING 10.251.24.12
recv time out seq=0
recv time out seq=1
recv time out seq=2
3 packets transmitted, 0 received, 100.00% packet loss
"""
ONE_LOST = """device 1 PING 10.251.11.11
recv seq=0,time=0.278000ms
recv time out seq=1
2 packets transmitted, 1 received, 50.00% packet loss
"""


def test_all_lost():
    result = parse_ping(ALL_LOST)
    assert (result["sent"], result["received"], result["loss_pct"], result["avg_ms"]) == (3, 0, 100.0, None)


def test_one_of_two_lost():
    result = parse_ping(ONE_LOST)
    assert (result["received"], result["seqs"], result["times_ms"]) == (1, [0], [0.278])


def test_a_timeout_line_outside_a_block_still_fails():
    with pytest.raises(ParseError, match="unexpected line"):
        parse_ping("recv time out seq=0\n" + ALL_LOST)
