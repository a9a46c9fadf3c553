# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the benchmark role: the `vllm bench serve` argv, the baseline gate and the metrics table."""

from __future__ import annotations

from typing import Any

GATED_METRICS = ("output_throughput", "total_token_throughput", "request_throughput")
TABLE_SERIES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2EL"))

# workload key -> `vllm bench serve` flag; None values are left out.
_FLAGS = (
    ("dataset_name", "--dataset-name"), ("dataset_path", "--dataset-path"),
    ("random_input_len", "--random-input-len"), ("random_output_len", "--random-output-len"),
    ("sharegpt_output_len", "--sharegpt-output-len"), ("custom_output_len", "--custom-output-len"),
    ("num_prompts", "--num-prompts"), ("request_rate", "--request-rate"),
    ("max_concurrency", "--max-concurrency"), ("num_warmups", "--num-warmups"), ("seed", "--seed"),
)
_NAMED = {"sharegpt": "sharegpt_output_len", "custom": "custom_output_len"}


def benchmark_argv(workload: dict[str, Any], base_url: str, model: str, result_dir: str,
                   result_filename: str) -> list[str]:
    """argv after `vllm` for one run; random lengths only with the random dataset, a path only with a named one."""
    name = workload.get("dataset_name", "random")
    if name != "random" and not workload.get("dataset_path"):
        raise ValueError(f"benchmark workload: dataset_name {name} needs dataset_path (a file on the runner host)")
    skip = {"random_input_len", "random_output_len"} if name != "random" else {"dataset_path"}
    skip |= {flag for ds, flag in _NAMED.items() if ds != name}
    argv = ["bench", "serve", "--backend", str(workload.get("backend", "vllm")), "--base-url", base_url,
            "--endpoint", str(workload.get("endpoint", "/v1/completions")), "--model", model]
    for key, flag in _FLAGS:
        value = workload.get(key)
        if key not in skip and value is not None and value != "":
            argv += [flag, str(value)]
    if workload.get("ignore_eos", True):
        argv.append("--ignore-eos")
    argv += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
             "--save-result", "--result-dir", result_dir, "--result-filename", result_filename]
    return argv


def benchmark_gate(result: dict[str, Any], baseline: float | None, threshold: float = 0.97,
                   metric: str = "output_throughput") -> dict[str, Any]:
    """Pass when result[metric] >= threshold x baseline; no baseline (None) means not gated."""
    if metric not in GATED_METRICS:
        raise ValueError(f"benchmark gate: metric {metric!r} is not one of {', '.join(GATED_METRICS)}")
    if metric not in result:
        raise ValueError(f"benchmark gate: the result JSON has no {metric!r}; keys: {', '.join(sorted(result))}")
    value = float(result[metric])
    failed_requests = int(result.get("failed", 0))
    if baseline is None:
        return {"gated": False, "passed": failed_requests == 0, "metric": metric, "value": value,
                "message": f"{metric} {value:.2f}: no baseline, not gated ({failed_requests} failed requests)"}
    required = float(threshold) * float(baseline)
    passed = value >= required and failed_requests == 0
    verdict = "PASS" if passed else "FAIL"
    message = (f"{verdict}: {metric} {value:.2f} {'>=' if value >= required else '<'} {required:.2f} "
               f"(= {float(threshold):g} x baseline {float(baseline):.2f})")
    if failed_requests:
        message += f"; {failed_requests} requests failed"
    return {"gated": True, "passed": passed, "metric": metric, "value": value, "baseline": float(baseline),
            "threshold": float(threshold), "required": required, "message": message}


def benchmark_table(result: dict[str, Any]) -> list[str]:
    """Lines of a fixed-width table: throughput, then TTFT/TPOT/ITL/E2EL mean, p50, p90, p99 (ms)."""
    lines = [f"{'requests ok/failed':<24}{result.get('completed', 0)}/{result.get('failed', 0)}",
             f"{'duration (s)':<24}{float(result.get('duration', 0.0)):.2f}",
             f"{'output tok/s':<24}{float(result.get('output_throughput', 0.0)):.2f}",
             f"{'total tok/s':<24}{float(result.get('total_token_throughput', 0.0)):.2f}",
             f"{'requests/s':<24}{float(result.get('request_throughput', 0.0)):.3f}",
             f"{'latency (ms)':<10}{'mean':>12}{'p50':>12}{'p90':>12}{'p99':>12}"]
    for key, title in TABLE_SERIES:
        cells = [result.get(f"{stat}_{key}_ms") for stat in ("mean", "p50", "p90", "p99")]
        lines.append(f"{title:<10}" + "".join(f"{c:>12.2f}" if isinstance(c, (int, float)) else f"{'-':>12}"
                                              for c in cells))
    return lines


class FilterModule:
    """Benchmark filters."""

    def filters(self) -> dict[str, Any]:
        return {"benchmark_argv": benchmark_argv, "benchmark_gate": benchmark_gate,
                "benchmark_table": benchmark_table}
