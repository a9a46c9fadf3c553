"""Fixtures: fake engines and the proxy as real processes on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROXY_SRC = ROOT / "proxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def request(port: int, method: str, path: str, body: object = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with the stdlib client; returns status, lower-cased headers, full body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@dataclass
class Cluster:
    """Processes started by one test; everything is killed by PID at teardown."""

    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    workers: dict[int, subprocess.Popen] = field(default_factory=dict)
    record: Path = field(init=False)

    def __post_init__(self) -> None:
        self.record = self.tmp / "bodies.jsonl"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"proc-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, role: str, port: int | None = None, *extra: str) -> int:
        port = port or free_port()
        proc = self._spawn([sys.executable, str(HERE / "fake_worker.py"), "--port", str(port), "--role", role,
                            "--record", str(self.record), *extra])
        wait_port(port, proc)
        self.workers[port] = proc
        return port

    def kill_worker(self, port: int) -> None:
        proc = self.workers.pop(port)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def proxy(self, prefill: list[int], decode: list[int], *extra: str) -> int:
        port = free_port()
        argv = [sys.executable, "-m", "ascend_pd_proxy", "--host", "127.0.0.1", "--port", str(port),
                "--prefiller-hosts", *["127.0.0.1"] * len(prefill), "--prefiller-ports", *map(str, prefill),
                "--decoder-hosts", *["127.0.0.1"] * len(decode), "--decoder-ports", *map(str, decode),
                "--health-interval", "0.3", "--health-timeout", "0.5", *extra]
        if "--loop" not in extra and os.environ.get("PROXY_TEST_LOOP"):  # run a whole suite on one event loop
            argv += ["--loop", os.environ["PROXY_TEST_LOOP"]]
        env = {**os.environ, "PYTHONPATH": str(PROXY_SRC)}
        self.proxy_proc = self._spawn(argv, env)
        wait_port(port, self.proxy_proc)
        return port

    def bodies(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def proxy_log(self) -> str:
        idx = self.procs.index(self.proxy_proc)
        return (self.tmp / f"proc-{idx}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def healthcheck(port: int) -> tuple[int, dict]:
    status, _unused, body = request(port, "GET", "/healthcheck")
    return status, json.loads(body)


def engine_state(port: int, role: str, engine_port: int) -> dict:
    _unused, snap = healthcheck(port)
    return next(e for e in snap[role] if e["engine"] == f"127.0.0.1:{engine_port}")


def wait_until(cond, timeout: float, step: float = 0.05) -> float:
    """Poll cond() until true; returns the seconds it took, fails the test after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")
