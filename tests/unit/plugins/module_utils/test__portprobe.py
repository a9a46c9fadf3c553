"""Real sockets on 127.0.0.1: free/taken ports and their owners, connects, the short-lived listener."""

from __future__ import annotations

import os
import socket
import time

import pytest

from ansible_collections.ascend_ops.vllm.plugins.module_utils import _portprobe as pp


@pytest.fixture
def listener():
    """A listening socket of this process on 127.0.0.1; closed afterwards."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    yield sock
    sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_taken_port_names_this_process(listener):
    port = listener.getsockname()[1]
    state = pp.port_state(port, allowed_units=[])
    assert state["free"] is False and state["allowed"] is False
    assert state["pid"] == os.getpid()
    assert state["process"]


def test_free_port_is_free():
    port = free_port()
    assert pp.port_state(port, allowed_units=[]) == {"port": port, "free": True, "allowed": True, "pid": None,
                                                     "process": None, "unit": None}


def test_allowed_unit_is_matched_in_full(listener, tmp_path):
    port = listener.getsockname()[1]
    unit = pp.owner_of(port)["unit"]
    if unit is None:
        pytest.skip("this test process is not in a systemd unit cgroup")
    assert pp.port_state(port, [unit.replace(".", r"\.")])["allowed"] is True
    assert pp.port_state(port, [unit[:-2]])["allowed"] is False


def test_connect_ok_and_refused(listener):
    ok, refused = pp.connect_all([("127.0.0.1", listener.getsockname()[1]), ("127.0.0.1", free_port())], 2)
    assert ok["ok"] is True and ok["error"] is None
    assert refused["ok"] is False and "refused" in refused["error"].lower()


def test_listener_serves_skips_taken_ports_and_stops(listener):
    taken, wanted = listener.getsockname()[1], free_port()
    started = pp.start_listener([wanted, taken], seconds=30, address="127.0.0.1")
    try:
        assert started["bound"] == [wanted] and started["skipped"] == [taken]
        assert started["pid"] != os.getpid() and started["start_time"] == pp.start_time(started["pid"])
        assert pp.connect("127.0.0.1", wanted, 2)["ok"] is True
        assert pp.port_state(wanted, [])["pid"] == started["pid"]
    finally:
        assert pp.stop_listener(started["pid"], started["start_time"]) is True
    assert pp.connect("127.0.0.1", wanted, 2)["ok"] is False
    assert pp.stop_listener(started["pid"], started["start_time"]) is False


def test_listener_exits_by_itself_at_its_deadline():
    port = free_port()
    started = pp.start_listener([port], seconds=1, address="127.0.0.1")
    try:
        assert pp.connect("127.0.0.1", port, 2)["ok"] is True
        deadline = time.monotonic() + 10
        while pp.connect("127.0.0.1", port, 1)["ok"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pp.connect("127.0.0.1", port, 1)["ok"] is False
    finally:
        pp.stop_listener(started["pid"], started["start_time"])


def test_nothing_to_bind_starts_nothing(listener):
    assert pp.start_listener([listener.getsockname()[1]], 5, "127.0.0.1") == {
        "pid": None, "start_time": None, "bound": [], "skipped": [listener.getsockname()[1]]}


def test_stop_leaves_a_different_process_alone():
    assert pp.stop_listener(os.getpid(), (pp.start_time(os.getpid()) or 0) + 1) is False
    assert pp.stop_listener(os.getpid(), None) is False
