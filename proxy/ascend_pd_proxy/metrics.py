"""Prometheus text exposition of the proxy's counters."""

from __future__ import annotations

import bisect
from collections import Counter

from .engines import ROLES, Registry

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.retries = 0
        self.stream_aborts = 0
        self.fallbacks: Counter[str] = Counter()  # whole requests served by one role while the other was out
        self.bucket_counts = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0

    def count(self, role: str, engine: str, outcome: str) -> None:
        self.requests[(role, engine, outcome)] += 1

    def observe(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def render(self, registry: Registry) -> bytes:
        out = ["# HELP ascend_proxy_requests_total Backend requests by role, engine and outcome.",
               "# TYPE ascend_proxy_requests_total counter"]
        for (role, engine, outcome), n in sorted(self.requests.items()):
            out.append(f'ascend_proxy_requests_total{{role="{role}",engine="{engine}",outcome="{outcome}"}} {n}')
        out += ["# HELP ascend_proxy_engine_up 1 when the engine is in rotation health-wise.",
                "# TYPE ascend_proxy_engine_up gauge"]
        gauges = ["# HELP ascend_proxy_outstanding Requests in flight per engine.",
                  "# TYPE ascend_proxy_outstanding gauge"]
        for role in ROLES:
            for eng in registry.engines[role]:
                labels = f'role="{role}",engine="{eng.key}"'
                out.append(f"ascend_proxy_engine_up{{{labels}}} {int(eng.up)}")
                gauges.append(f"ascend_proxy_outstanding{{{labels}}} {eng.outstanding}")
        out += gauges
        out += ["# HELP ascend_proxy_retries_total Requests re-sent to another engine.",
                "# TYPE ascend_proxy_retries_total counter", f"ascend_proxy_retries_total {self.retries}",
                "# HELP ascend_proxy_stream_aborts_total Streams ended with an error event after bytes were sent.",
                "# TYPE ascend_proxy_stream_aborts_total counter",
                f"ascend_proxy_stream_aborts_total {self.stream_aborts}",
                "# HELP ascend_proxy_fallback_total Requests served whole by one role while the other had no "
                "engine in rotation (--fallback).",
                "# TYPE ascend_proxy_fallback_total counter"]
        out += [f'ascend_proxy_fallback_total{{served_by="{role}"}} {self.fallbacks[role]}' for role in ROLES]
        out += ["# HELP ascend_proxy_request_duration_seconds Client request duration.",
                "# TYPE ascend_proxy_request_duration_seconds histogram"]
        cumulative = 0
        for bound, n in zip(BUCKETS, self.bucket_counts):
            cumulative += n
            out.append(f'ascend_proxy_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'ascend_proxy_request_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
        out.append(f"ascend_proxy_request_duration_seconds_sum {self.duration_sum:.6f}")
        out.append(f"ascend_proxy_request_duration_seconds_count {self.duration_count}")
        return ("\n".join(out) + "\n").encode()
