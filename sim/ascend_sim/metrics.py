"""Prometheus metrics with vLLM's names and the ``model_name`` label."""

from __future__ import annotations

import bisect
from collections import Counter

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0]


class Histogram:
    """Cumulative-bucket histogram."""

    def __init__(self, buckets: list[float]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        idx = bisect.bisect_left(self.buckets, value)
        if idx < len(self.counts):
            self.counts[idx] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        """Exposition lines: _bucket (cumulative, with +Inf), _sum, _count."""
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {running:.1f}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count:.1f}')
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        out.append(f"{name}_count{{{labels}}} {self.count:.1f}")
        return out


class Metrics:
    """All metrics of one engine."""

    def __init__(self, model_name: str) -> None:
        self.labels = f'engine="0",model_name="{model_name}"'
        self.running = 0
        self.waiting = 0
        self.kv_usage = 0.0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success: Counter[str] = Counter({"stop": 0, "length": 0, "abort": 0})
        self.ttft = Histogram(TTFT_BUCKETS)
        self.tpot = Histogram(TPOT_BUCKETS)

    def render(self) -> str:
        """Prometheus text format."""
        lab = self.labels
        lines = []
        for name, kind, value, text in (
            ("vllm:num_requests_running", "gauge", self.running, "Number of requests in model execution batches."),
            ("vllm:num_requests_waiting", "gauge", self.waiting, "Number of requests waiting to be processed."),
            ("vllm:kv_cache_usage_perc", "gauge", self.kv_usage, "KV-cache usage. 1 means 100 percent usage."),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens, "Number of prefill tokens processed."),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens,
             "Number of generation tokens processed."),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name}{{{lab}}} {float(value)}"]
        lines += ["# HELP vllm:request_success_total Count of successfully processed requests.",
                  "# TYPE vllm:request_success_total counter"]
        lines += [f'vllm:request_success_total{{{lab},finished_reason="{r}"}} {float(n)}'
                  for r, n in sorted(self.success.items())]
        for name, hist, text in (
            ("vllm:time_to_first_token_seconds", self.ttft, "Histogram of time to first token in seconds."),
            ("vllm:inter_token_latency_seconds", self.tpot, "Histogram of inter-token latency in seconds."),
            ("vllm:time_per_output_token_seconds", self.tpot,
             "Histogram of time per output token in seconds (deprecated alias of inter_token_latency)."),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"] + hist.lines(name, lab)
        return "\n".join(lines) + "\n"
