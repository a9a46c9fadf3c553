"""ascend_ops.vllm.port_probe through ansible, with real sockets on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def busy():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    yield sock.getsockname()[1]
    sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("check", [False, True])
def test_free_reports_taken_ports_in_check_mode_too(run_module, busy, check):
    port = free_port()
    result = run_module("port_probe", {"state": "free", "ports": [busy, port]}, check=check)
    assert result["changed"] is False
    assert [p["port"] for p in result["taken"]] == [busy]
    assert [p["free"] for p in result["ports"]] == [False, True]


def test_listen_connect_stop_round_trip(run_module):
    port = free_port()
    started = run_module("port_probe", {"state": "listening", "ports": [port], "seconds": 30})
    try:
        assert started["bound"] == [port] and started["pid"]
        reached = run_module("port_probe", {"state": "connect", "targets": [{"address": "127.0.0.1", "port": port}]})
        assert reached["failed_targets"] == [] and reached["results"][0]["ok"] is True
    finally:
        stopped = run_module("port_probe", {"state": "stopped", "pid": started["pid"], "start_time": started["start_time"]})
    assert stopped["stopped"] is True
    after = run_module("port_probe", {"state": "connect", "targets": [{"address": "127.0.0.1", "port": port}], "timeout": 1})
    assert after["failed_targets"][0]["port"] == port


def test_bad_ports_fail_with_the_values(run_module):
    result = run_module("port_probe", {"state": "free", "ports": [0, 70000]})
    assert result["_status"] == "FAILED" and "[0, 70000]" in result["msg"]
