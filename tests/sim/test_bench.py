"""vllm bench serve against a live sim server."""

from __future__ import annotations

import json

from sim_support import free_port, health, run_tool, wait_for

KEYS = {"date", "backend", "model_id", "num_prompts", "request_rate", "max_concurrency", "duration", "completed",
        "failed", "total_input_tokens", "total_output_tokens", "request_throughput", "output_throughput",
        "total_token_throughput"} | {f"{s}_{m}_ms" for s in ("mean", "median", "std", "p50", "p99")
                                     for m in ("ttft", "tpot", "itl", "e2el")}


def test_bench_serve_writes_result_json(vllm, sim_env: dict[str, str], tmp_path) -> None:
    port = free_port()
    vllm("serve", sim_env["MODEL"], "--port", str(port), "--served-model-name", "glm-5",
         env={"VLLM_SIM_TOKEN_DELAY": "0.002"})
    wait_for(lambda: health(port) == 200, what="server healthy")
    out = run_tool("vllm_cli", "bench", "serve", "--backend", "vllm", "--base-url", f"http://127.0.0.1:{port}",
                   "--model", "glm-5", "--dataset-name", "random", "--random-input-len", "12",
                   "--random-output-len", "6", "--num-prompts", "12", "--max-concurrency", "3", "--ignore-eos",
                   "--num-warmups", "1", "--save-result", "--result-dir", str(tmp_path / "res"),
                   "--result-filename", "r.json", "--percentile-metrics", "ttft,tpot,itl,e2el",
                   "--metric-percentiles", "50,99", env=sim_env)
    assert out.returncode == 0, out.stderr
    assert "============ Serving Benchmark Result ============" in out.stdout
    result = json.loads((tmp_path / "res" / "r.json").read_text())
    assert KEYS <= set(result)
    assert (result["completed"], result["failed"]) == (12, 0)
    assert result["total_input_tokens"] == 144 and result["total_output_tokens"] == 72
    assert result["mean_tpot_ms"] >= 2.0 and result["p99_ttft_ms"] >= result["median_ttft_ms"]
    assert result["max_concurrency"] == 3 and result["request_rate"] == "inf"


def test_bench_against_dead_server_fails(sim_env: dict[str, str]) -> None:
    out = run_tool("vllm_cli", "bench", "serve", "--port", str(free_port()), "--num-prompts", "2", env=sim_env)
    assert out.returncode == 1 and "cannot reach the server" in out.stderr


def test_bench_named_datasets_and_metadata(vllm, sim_env: dict[str, str], tmp_path) -> None:
    port = free_port()
    vllm("serve", sim_env["MODEL"], "--port", str(port), "--served-model-name", "glm-5",
         env={"VLLM_SIM_TOKEN_DELAY": "0.001"})
    wait_for(lambda: health(port) == 200, what="server healthy")
    share = tmp_path / "share.json"
    share.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "one two three four five"},
                           {"from": "gpt", "value": "a b c d e f g"}]},
        {"conversations": [{"from": "human", "value": "too short"}]},
    ]))
    custom = tmp_path / "custom.jsonl"
    custom.write_text('{"prompt": "alpha beta gamma"}\n{"prompt": "delta epsilon"}\n')
    common = ("bench", "serve", "--base-url", f"http://127.0.0.1:{port}", "--model", "glm-5", "--num-prompts", "5",
              "--save-result", "--result-dir", str(tmp_path))
    out = run_tool("vllm_cli", *common, "--dataset-name", "sharegpt", "--dataset-path", str(share),
                   "--result-filename", "s.json", "--metadata", "scenario=sim", "image=none", env=sim_env)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "s.json").read_text())
    assert (result["completed"], result["total_input_tokens"], result["total_output_tokens"]) == (1, 5, 7)
    assert result["scenario"] == "sim" and result["image"] == "none"
    out = run_tool("vllm_cli", *common, "--dataset-name", "custom", "--dataset-path", str(custom),
                   "--custom-output-len", "3", "--result-filename", "c.json", env=sim_env)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "c.json").read_text())
    assert (result["completed"], result["total_input_tokens"], result["total_output_tokens"]) == (2, 5, 6)
    out = run_tool("vllm_cli", *common, "--dataset-name", "sharegpt", env=sim_env)
    assert out.returncode == 2 and "needs --dataset-path" in out.stderr
