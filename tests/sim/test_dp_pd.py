"""Data-parallel join gating and the PD (Mooncake-style) KV handshake, with real processes."""

from __future__ import annotations

import json
import socket

from sim_support import free_port, health, http_call, wait_for


def _dp_args(model: str, port: int, rpc: int, size: int) -> list[str]:
    return ["serve", model, "--host", "127.0.0.1", "--port", str(port), "--data-parallel-size", str(size),
            "--data-parallel-address", "127.0.0.1", "--data-parallel-rpc-port", str(rpc)]


def test_external_dp_health_gated_until_all_ranks_join(vllm, sim_env: dict[str, str]) -> None:
    rpc, p0, p1 = free_port(), free_port(), free_port()
    # Rank 1 starts first: the coordinator (rank 0) is not there yet; it retries.
    r1 = vllm(*_dp_args(sim_env["MODEL"], p1, rpc, 2), "--data-parallel-rank", "1",
              env={"ASCEND_RT_VISIBLE_DEVICES": "1"})
    wait_for(lambda: health(p1) == 503, what="rank 1 answering 503")
    wait_for(lambda: "Waiting for DP coordinator at 127.0.0.1" in r1.output(), what="retry log")
    r0 = vllm(*_dp_args(sim_env["MODEL"], p0, rpc, 2), "--data-parallel-rank", "0",
              env={"ASCEND_RT_VISIBLE_DEVICES": "0"})
    wait_for(lambda: health(p0) == 200 and health(p1) == 200, what="both ranks healthy")
    # Rank 0 (the coordinator) dies: rank 1 loses the group and goes 503.
    r0.popen.terminate()
    r0.popen.wait(timeout=5)
    wait_for(lambda: health(p1) == 503, what="rank 1 back to 503 after coordinator loss")
    status, body = http_call(p1, "POST", "/v1/completions", {"prompt": "x"})
    assert status == 503 and "data parallel" in json.loads(body)["error"]["message"]
    assert "DP group broken" in r1.output()


def test_internal_dp_headless_joins_master(vllm, sim_env: dict[str, str]) -> None:
    rpc, port = free_port(), free_port()
    common = _dp_args(sim_env["MODEL"], port, rpc, 3)
    vllm(*common, "--data-parallel-size-local", "1", env={"ASCEND_RT_VISIBLE_DEVICES": "0"})
    wait_for(lambda: health(port) == 503, what="master up and waiting")
    head = vllm(*common, "--headless", "--data-parallel-size-local", "2", "--data-parallel-start-rank", "1",
                env={"ASCEND_RT_VISIBLE_DEVICES": "4,5"})
    wait_for(lambda: health(port) == 200, what="master healthy after headless joined")
    assert "Joined DP coordinator 127.0.0.1" in head.output() and "ranks [1, 2]" in head.output()
    assert "Starting vLLM API server" not in head.output()


def test_conflicting_dp_size_is_refused(vllm, sim_env: dict[str, str]) -> None:
    rpc, port = free_port(), free_port()
    vllm(*_dp_args(sim_env["MODEL"], port, rpc, 2), "--data-parallel-size-local", "1",
         env={"ASCEND_RT_VISIBLE_DEVICES": "0"})
    wait_for(lambda: health(port) == 503, what="master waiting")
    bad = vllm(*_dp_args(sim_env["MODEL"], free_port(), rpc, 4), "--data-parallel-rank", "1",
               env={"ASCEND_RT_VISIBLE_DEVICES": "1"})
    assert bad.popen.wait(timeout=10) == 1
    assert "conflicting data parallel size" in bad.output()
    assert health(port) == 503


def _kv(role: str, port: int, engine: str) -> str:
    return json.dumps({"kv_connector": "MooncakeConnectorV1", "kv_role": role, "kv_port": str(port),
                       "engine_id": engine, "kv_connector_extra_config": {
                           "prefill": {"dp_size": 1, "tp_size": 2}, "decode": {"dp_size": 1, "tp_size": 1}}})


def test_pd_handshake_success_and_failure(vllm, sim_env: dict[str, str]) -> None:
    kv_p, kv_d, pp, dp = free_port(), free_port(), free_port(), free_port()
    prod = vllm("serve", sim_env["MODEL"], "--host", "127.0.0.1", "--port", str(pp), "--tensor-parallel-size", "2",
                "--kv-transfer-config", _kv("kv_producer", kv_p, "0"), env={"ASCEND_RT_VISIBLE_DEVICES": "0,1"})
    cons = vllm("serve", sim_env["MODEL"], "--host", "127.0.0.1", "--port", str(dp), "--kv-transfer-config",
                _kv("kv_consumer", kv_d, "1"), env={"ASCEND_RT_VISIBLE_DEVICES": "2", "VLLM_SIM_KV_TIMEOUT": "1"})
    wait_for(lambda: health(pp) == 200 and health(dp) == 200, what="P and D healthy")
    proxy_params = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                    "remote_block_ids": None, "remote_host": None, "remote_port": None}
    status, body = http_call(pp, "POST", "/v1/completions", {"prompt": "a b c", "max_tokens": 1, "stream": False,
                                                             "kv_transfer_params": proxy_params})
    params = json.loads(body)["kv_transfer_params"]
    assert status == 200
    assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
    assert (params["remote_host"], params["remote_port"], params["remote_engine_id"]) == ("127.0.0.1", kv_p, "0")
    assert params["tp_size"] == 2 and params["remote_block_ids"]
    status, body = http_call(dp, "POST", "/v1/completions", {"prompt": "a b c", "max_tokens": 3,
                                                             "kv_transfer_params": params})
    assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 3
    assert f"KV handshake with 127.0.0.1:{kv_p} engine 0 ok" in cons.output()
    assert "KV handshake from 1" in prod.output()
    dead = free_port()
    status, body = http_call(dp, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 3, "kv_transfer_params":
                                                             {**params, "remote_port": dead}})
    assert status == 500 and f"127.0.0.1:{dead}" in json.loads(body)["error"]["message"]
    assert f"KV handshake with 127.0.0.1:{dead} failed" in cons.output()
    # A plain request to the consumer (no kv params) is served normally.
    assert http_call(dp, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 2})[0] == 200


def _blocked_pair(blocker: socket.socket) -> int:
    """A port p that is free while `blocker` listens on p + 1 (other processes may hold any fixed port)."""
    for _attempt in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with socket.socket() as below:
            try:
                below.bind(("127.0.0.1", port - 1))
                blocker.bind(("127.0.0.1", port))
            except OSError:
                continue
        blocker.listen()
        return port - 1
    raise AssertionError("no two adjacent free loopback ports in 50 attempts")


def test_kv_port_taken_is_fatal(vllm, sim_env: dict[str, str]) -> None:
    with socket.socket() as blocker:
        kv_p = _blocked_pair(blocker)  # the blocker holds kv_p + 1, the tp_rank 1 handshake port
        proc = vllm("serve", sim_env["MODEL"], "--host", "127.0.0.1", "--port", str(free_port()),
                    "--tensor-parallel-size", "2", "--kv-transfer-config", _kv("kv_producer", kv_p, "0"))
        assert proc.popen.wait(timeout=10) == 1
    assert f"ZMQError: Address already in use (addr='tcp://127.0.0.1:{kv_p + 1}')" in proc.output()
