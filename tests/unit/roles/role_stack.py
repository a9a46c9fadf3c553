"""Helpers and the live stack fixture (a simulated engine behind ascend_pd_proxy on 127.0.0.1) for the role tests."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[3]
ROLES = ROOT / "roles"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, body: dict | None = None) -> tuple[int, bytes]:
    """GET (or POST when body is given) 127.0.0.1:port/path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST" if body else "GET", path, json.dumps(body) if body else None,
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def _wait_ok(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"127.0.0.1:{port}{path} not 200 after 20 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """One sim `vllm serve` (prefill and decode at once) behind ascend_pd_proxy; both stopped by PID."""
    tmp = tmp_path_factory.mktemp("stack")
    sys.path.insert(0, str(ROOT / "sim"))
    from ascend_sim import state

    state.save(state.default_state("a2", 8, "127.0.0.10"), tmp / "npu.json")
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM", "ASCEND", "HCCL"))}
    env.update(PYTHONPATH=f"{ROOT / 'sim'}:{ROOT / 'proxy'}", VLLM_SIM_STATE=str(tmp / "npu.json"),
               VLLM_SIM_LOCK_DIR=str(tmp / "locks"), VLLM_SIM_ADVERTISE_HOST="127.0.0.1",
               VLLM_SIM_TOKEN_DELAY="0.001")
    engine_port, proxy_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, port, path in (
            (["-m", "ascend_sim.vllm_cli", "serve", str(model), "--port", str(engine_port),
              "--served-model-name", "glm-5"], engine_port, "/health"),
            (["-m", "ascend_pd_proxy", "--host", "127.0.0.1", "--port", str(proxy_port),
              "--prefiller-hosts", "127.0.0.1", "--prefiller-ports", str(engine_port),
              "--decoder-hosts", "127.0.0.1", "--decoder-ports", str(engine_port)], proxy_port, "/healthcheck"),
        ):
            log = tmp / f"proc-{len(procs)}.log"
            with log.open("wb") as fh:
                procs.append(subprocess.Popen([sys.executable, *argv], env=env, stdout=fh,
                                              stderr=subprocess.STDOUT))
            _wait_ok(port, path, procs[-1], log)
        yield {"engine_port": engine_port, "proxy_port": proxy_port, "env": env, "tmp": tmp}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
