"""vllm serve: argparse errors, startup validation, NPU conflicts."""

from __future__ import annotations

import pytest

from sim_support import free_port, health, run_tool, wait_for


@pytest.mark.parametrize(("extra", "needle"), [
    (["--foo"], "vllm serve: error: unrecognized arguments: --foo"),
    (["--port", "x"], "argument --port: invalid int value: 'x'"),
    (["--kv-transfer-config", "{bad"], "argument --kv-transfer-config: invalid JSON"),
    (["--quantization", "nope"], "argument --quantization/-q: invalid choice"),
    (["--max-model-len", "12q"], "argument --max-model-len"),
])
def test_argparse_errors_exit_2(sim_env: dict[str, str], extra: list[str], needle: str) -> None:
    res = run_tool("vllm_cli", "serve", sim_env["MODEL"], *extra, env=sim_env)
    assert res.returncode == 2
    assert needle in res.stderr


@pytest.mark.parametrize(("extra", "needle"), [
    (["--headless", "--data-parallel-size", "2", "--data-parallel-rank", "1"], "cannot be combined with --headless"),
    (["--data-parallel-size", "2", "--data-parallel-rank", "2"], "data_parallel_rank (2) must be in [0, "),
    (["--headless"], "--headless requires --data-parallel-size > 1"),
    (["--gpu-memory-utilization", "1.5"], "gpu_memory_utilization must be in (0, 1]"),
    (["--max-model-len", "8k"], "max_model_len (8000) is greater than the derived"),
    (["--tensor-parallel-size", "16"], "needs 16 NPUs"),
    (["--kv-transfer-config", '{"kv_role": "kv_producer", "kv_port": 30000, '
      '"kv_connector_extra_config": {"prefill": {"dp_size": 2, "tp_size": 1}}}'],
     "KV transfer 'prefill' config has a conflicting data parallel size"),
])
def test_validation_errors_exit_1(sim_env: dict[str, str], extra: list[str], needle: str) -> None:
    res = run_tool("vllm_cli", "serve", sim_env["MODEL"], "--port", str(free_port()), *extra, env=sim_env)
    assert res.returncode == 1, res.stdout
    assert needle in res.stdout


def test_missing_model_dir(sim_env: dict[str, str], tmp_path) -> None:
    res = run_tool("vllm_cli", "serve", str(tmp_path / "nowhere"), env=sim_env)
    assert res.returncode == 1
    assert f"{tmp_path / 'nowhere'}" in res.stdout and "config.json" in res.stdout


def test_missing_state_file(sim_env: dict[str, str], tmp_path) -> None:
    env = {**sim_env, "VLLM_SIM_STATE": str(tmp_path / "absent.json")}
    res = run_tool("vllm_cli", "serve", sim_env["MODEL"], env=env)
    assert res.returncode == 1
    assert "absent.json not found" in res.stdout


def test_visible_device_out_of_range(sim_env: dict[str, str]) -> None:
    env = {**sim_env, "ASCEND_RT_VISIBLE_DEVICES": "7,8"}
    res = run_tool("vllm_cli", "serve", sim_env["MODEL"], "--tensor-parallel-size", "2", env=env)
    assert res.returncode == 1
    assert "names NPU 8 but this machine has 8 NPUs" in res.stdout


def test_second_rank_on_same_npu_fails_naming_holder(vllm, sim_env: dict[str, str]) -> None:
    port = free_port()
    first = vllm("serve", sim_env["MODEL"], "--port", str(port), "--tensor-parallel-size", "2",
                 env={"ASCEND_RT_VISIBLE_DEVICES": "2,3"})
    wait_for(lambda: health(port) == 200, what="first rank healthy")
    res = run_tool("vllm_cli", "serve", sim_env["MODEL"], "--port", str(free_port()), "--tensor-parallel-size", "2",
                   env={**sim_env, "ASCEND_RT_VISIBLE_DEVICES": "3,4"})
    assert res.returncode == 1
    assert f"NPU 3 is already in use by process {first.popen.pid}" in res.stdout
    # Without ASCEND_RT_VISIBLE_DEVICES the process takes 0..n-1, which are free here.
    other = free_port()
    vllm("serve", sim_env["MODEL"], "--port", str(other), "--tensor-parallel-size", "2")
    wait_for(lambda: health(other) == 200, what="rank on NPUs 0,1 healthy")
    smi = run_tool("npu_smi", "info", env=sim_env)
    assert smi.returncode == 0
    assert f"| {first.popen.pid:<14}|" in smi.stdout
    assert smi.stdout.count("53300 / 65536") + smi.stdout.count("53260 / 65536") + \
        smi.stdout.count("53220 / 65536") + smi.stdout.count("53180 / 65536") == 4


def test_api_port_in_use_is_fatal(vllm, sim_env: dict[str, str]) -> None:
    port = free_port()
    vllm("serve", sim_env["MODEL"], "--port", str(port))
    wait_for(lambda: health(port) == 200, what="first server healthy")
    res = run_tool("vllm_cli", "serve", sim_env["MODEL"], "--port", str(port),
                   env={**sim_env, "ASCEND_RT_VISIBLE_DEVICES": "5"})
    assert res.returncode == 1
    assert "Address already in use" in res.stdout and str(port) in res.stdout
