"""Fixtures for the simulator tests: tmp state/lock dirs, free ports, vllm processes cleaned up by PID."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

SIM_ROOT = Path(__file__).resolve().parents[2] / "sim"
FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"  # copies of the shared real outputs
sys.path.insert(0, str(SIM_ROOT))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_call(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None,
              timeout: float = 10) -> tuple[int, bytes]:
    """One HTTP request to 127.0.0.1:port; returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def health(port: int) -> int | None:
    """/health status, or None when nothing answers."""
    try:
        return http_call(port, "GET", "/health", timeout=2)[0]
    except OSError:
        return None


def wait_for(predicate: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Poll predicate until true or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_env(tmp_path: Path) -> dict[str, str]:
    """Environment with a tmp A2 state file (8 NPUs on 127.0.0.x), lock dir and model dir."""
    from ascend_sim import state

    state_file = tmp_path / "npu.json"
    state.save(state.default_state("a2", 8, "127.0.0.10"), state_file)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM", "ASCEND", "HCCL"))}
    env.update(PYTHONPATH=str(SIM_ROOT), VLLM_SIM_STATE=str(state_file), VLLM_SIM_LOCK_DIR=str(tmp_path / "locks"),
               MODEL=str(model), VLLM_SIM_ADVERTISE_HOST="127.0.0.1")
    return env


@pytest.fixture
def sim_env(tmp_path: Path) -> dict[str, str]:
    """make_env in this test's tmp_path."""
    return make_env(tmp_path)


class Proc:
    """A started sim process with its log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen, self.log = popen, log

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text()


@contextlib.contextmanager
def launcher(sim_env: dict[str, str], log_dir: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``vllm ...`` processes; every one is terminated by PID on exit."""
    procs: list[Proc] = []

    def start(*argv: str, env: dict[str, str] | None = None) -> Proc:
        log = log_dir / f"vllm-{len(procs)}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen([sys.executable, "-m", "ascend_sim.vllm_cli", *argv],
                                     env={**sim_env, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT)
        proc = Proc(popen, log)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        _stop(procs)


@pytest.fixture
def vllm(sim_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """launcher() scoped to one test."""
    with launcher(sim_env, tmp_path) as start:
        yield start


def _stop(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.terminate()
    for proc in procs:
        try:
            proc.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


def run_tool(module: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ascend_sim.<module> argv`` to completion."""
    return subprocess.run([sys.executable, "-m", f"ascend_sim.{module}", *argv], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
