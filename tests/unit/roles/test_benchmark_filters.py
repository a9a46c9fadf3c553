"""Benchmark role filters: argv for `vllm bench serve`, the baseline gate and the table, against a live sim stack."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import yaml

from role_stack import ROLES, ROOT

_SPEC = importlib.util.spec_from_file_location("benchmark_filters", ROOT / "plugins" / "filter" / "benchmark.py")
assert _SPEC and _SPEC.loader
bf = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bf)


def test_argv_random_leaves_out_named_dataset_flags() -> None:
    argv = bf.benchmark_argv({"dataset_name": "random", "random_input_len": 64, "random_output_len": 16,
                              "num_prompts": 4, "max_concurrency": None, "dataset_path": "/x",
                              "custom_output_len": 9}, "http://h:1", "glm-5", "/r", "f.json")
    assert argv[:4] == ["bench", "serve", "--backend", "vllm"]
    assert "--dataset-path" not in argv and "--custom-output-len" not in argv and "--max-concurrency" not in argv
    assert argv[argv.index("--random-input-len") + 1] == "64" and "--ignore-eos" in argv
    assert argv[argv.index("--result-filename") + 1] == "f.json"


def test_argv_named_dataset_needs_a_path() -> None:
    with pytest.raises(ValueError, match="needs dataset_path"):
        bf.benchmark_argv({"dataset_name": "sharegpt"}, "http://h:1", "m", "/r", "f")
    argv = bf.benchmark_argv({"dataset_name": "custom", "dataset_path": "/d.jsonl", "random_input_len": 5,
                              "custom_output_len": 7, "sharegpt_output_len": 3}, "http://h:1", "m", "/r", "f")
    assert argv[argv.index("--custom-output-len") + 1] == "7"
    assert "--random-input-len" not in argv and "--sharegpt-output-len" not in argv


@pytest.mark.parametrize("value,baseline,passed,needle", [
    (305.0, 314.1355, True, "PASS: output_throughput 305.00 >= 304.71"),
    (304.0, 314.1355, False, "FAIL: output_throughput 304.00 < 304.71 (= 0.97 x baseline 314.14)"),
])
def test_gate_at_097(value: float, baseline: float, passed: bool, needle: str) -> None:
    verdict = bf.benchmark_gate({"output_throughput": value, "failed": 0}, baseline)
    assert verdict["passed"] is passed and needle in verdict["message"]


def test_gate_fails_on_failed_requests_and_unknown_metric() -> None:
    verdict = bf.benchmark_gate({"output_throughput": 10.0, "failed": 2}, 1.0, 0.5)
    assert not verdict["passed"] and "2 requests failed" in verdict["message"]
    assert bf.benchmark_gate({"output_throughput": 1.0}, None)["gated"] is False
    with pytest.raises(ValueError, match="not one of"):
        bf.benchmark_gate({"output_throughput": 1.0}, 1.0, 0.97, "mean_ttft_ms")


def test_baseline_file_marks_every_case() -> None:
    cases = yaml.safe_load((ROLES / "benchmark" / "files" / "baselines.yml").read_text())["cases"]
    for name, case in cases.items():
        assert case["status"] in {"published", "placeholder", "sim"}, name
        assert case["source"], name
        assert (case["baseline"] is None) == (case["status"] == "placeholder"), name
    assert cases["glm51_w8a8_a2_dual_node_gsm8k"]["baseline"] == pytest.approx(314.1355)
    assert cases["glm51_w8a8c8_a3_pd_128k"]["baseline"] == pytest.approx(1265.6172)


def test_real_run_through_the_proxy_gates_and_prints(stack: dict[str, object]) -> None:
    tmp = stack["tmp"]
    workload = {"dataset_name": "random", "random_input_len": 16, "random_output_len": 8, "num_prompts": 6,
                "max_concurrency": 3, "num_warmups": 1}
    argv = bf.benchmark_argv(workload, f"http://127.0.0.1:{stack['proxy_port']}", "glm-5", str(tmp), "r.json")
    out = subprocess.run([sys.executable, "-m", "ascend_sim.vllm_cli", *argv], env=stack["env"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp / "r.json").read_text())  # type: ignore[operator]
    assert (result["completed"], result["total_output_tokens"]) == (6, 48)
    table = bf.benchmark_table(result)
    assert table[0] == "requests ok/failed      6/0"
    ttft = next(line for line in table if line.startswith("TTFT")).split()
    assert float(ttft[2]) == pytest.approx(result["p50_ttft_ms"], abs=0.01)
    assert float(ttft[4]) == pytest.approx(result["p99_ttft_ms"], abs=0.01)
    assert bf.benchmark_gate(result, result["output_throughput"] / 2)["passed"]
    bad = bf.benchmark_gate(result, 1e6)
    assert not bad["passed"] and bad["message"].startswith("FAIL: output_throughput")
