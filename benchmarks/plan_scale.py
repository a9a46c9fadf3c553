#!/usr/bin/env python
"""Benchmark: how `plan()` scales from a 10-host to a 1,000-host xPyD cluster. Run by hand, not a test:

    .venv/bin/python benchmarks/plan_scale.py [--runs 5]

Both specs use the seed's 1P1D shapes and the role-default recipes (GLM-5 w8a8 on A3):
prefill instances of tp 16 x 1 rank per host, decode instances of tp 4 x 4 ranks per host.
  small: 1 prefill instance x 2 hosts + 1 decode instance x 8 hosts           (10 hosts)
  large: 10 prefill instances x 20 hosts + 50 decode instances x 16 hosts  (1,000 hosts)
Each is planned --runs times in this process; the best time is reported with the time per host
and the large/small per-host ratio (1.0 = linear scaling).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import plan, resolve_profile  # noqa: E402

DEFAULTS = REPO / "roles" / "vllm" / "defaults" / "main"


def load(name: str, key: str) -> dict:
    return yaml.safe_load((DEFAULTS / name).read_text())[key]


def build_spec(prefill: tuple[int, int], decode: tuple[int, int]) -> dict:
    """(instances, hosts per instance) for each role -> planner input with one proxy host."""
    hardware = dict(load("hardware.yml", "vllm_hardware_profiles")["a3"], key="a3")
    model = load("models.yml", "vllm_models")["glm5_w8a8"]
    profiles = load("profiles.yml", "vllm_deployment_profiles")
    shapes = {
        "prefill": {"tp_size": 16, "dp_size_local": 1, "api_port": 6700, "dp_rpc_port": 10521, "kv_port": 36000},
        "decode": {"tp_size": 4, "dp_size_local": 4, "api_port": 6721, "dp_rpc_port": 10523, "kv_port": 37000},
    }
    hosts = []
    for role, (instances, per_instance) in (("prefill", prefill), ("decode", decode)):
        profile = resolve_profile(profiles, f"pd_a3_w8a8_{role}")
        for i in range(instances):
            for j in range(per_instance):
                n = len(hosts)
                hosts.append({
                    "name": f"{role}{i}-{j}", "groups": [role], "address": f"10.{n // 250}.{n % 250}.1",
                    "nic": "enp23s0f3", "instance": f"{role}{i}", "hardware": hardware, "npu_count": None,
                    "dp_rank_start": None, "dp_mode": "external", "model": model,
                    "model_path": "/root/.cache/glm5-w8a8", "profile": profile, "env_overrides": {},
                    "serve_overrides": {}, "additional_config_overrides": {}, **shapes[role],
                })
    hosts.append({"name": "proxy0", "groups": ["proxy"], "address": "10.99.0.1"})
    return {"hosts": hosts, "proxy": {"backend": "vllm_ascend_example", "port": 8000}, "require_nic": None}


def best_time(spec: dict, runs: int) -> tuple[float, dict]:
    best, planned = float("inf"), {}
    for _run in range(runs):
        start = time.perf_counter()
        planned = plan(spec)
        best = min(best, time.perf_counter() - start)
    return best, planned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="plans per spec; the best is reported")
    args = parser.parse_args()
    rows = []
    for label, spec in (("small", build_spec((1, 2), (1, 8))), ("large", build_spec((10, 20), (50, 16)))):
        seconds, planned = best_time(spec, args.runs)
        engines = len(planned["hosts"])
        launches = sum(len(h["launches"]) for h in planned["hosts"].values())
        rows.append((label, engines, seconds))
        print(f"{label}: {engines} engine hosts, {len(planned['instances'])} instances, {launches} launches, "
              f"best of {args.runs}: {seconds * 1000:.1f} ms ({seconds / engines * 1e6:.0f} us/host)")
    (_small, small_n, small_s), (_large, large_n, large_s) = rows
    print(f"per-host ratio large/small: {(large_s / large_n) / (small_s / small_n):.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()
