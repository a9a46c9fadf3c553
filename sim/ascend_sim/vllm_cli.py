"""``vllm`` command line: ``vllm serve`` and ``vllm bench serve`` with vLLM's flags and types."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

QUANTIZATIONS = [
    "ascend", "aqlm", "awq", "awq_marlin", "bitsandbytes", "compressed-tensors", "fbgemm_fp8", "fp8",
    "gguf", "gptq", "gptq_marlin", "modelopt", "moe_wna16", "mxfp4", "torchao",
]
_HUMAN = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgG]?)$")


def human_readable_int(value: str) -> int:
    """vLLM's --max-model-len parser: 25600, 1k (=1000), 1K (=1024), 1.5m, 2G."""
    match = _HUMAN.match(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid human readable int value: {value!r}")
    number, suffix = match.groups()
    if not suffix:
        if "." in number:
            raise argparse.ArgumentTypeError(f"invalid human readable int value: {value!r}")
        return int(number)
    if suffix.isupper():
        if "." in number:
            raise argparse.ArgumentTypeError(f"decimals are not allowed with binary suffix {suffix}: {value!r}")
        return int(number) * 1024 ** ("KMG".index(suffix) + 1)
    return int(float(number) * 1000 ** ("kmg".index(suffix) + 1))


def json_object(value: str) -> dict[str, Any]:
    """A JSON object argument (vLLM's config flags)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"invalid JSON {value!r}: {err}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return parsed


def _add_serve(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="Start the vLLM OpenAI compatible API server (simulated).")
    p.add_argument("model_tag", metavar="MODEL", help="model directory (must contain config.json)")
    p.add_argument("--host", type=str, default=None)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-parallel-size", "-dp", type=int, default=1)
    p.add_argument("--data-parallel-size-local", "-dpl", type=int, default=None)
    p.add_argument("--data-parallel-address", "-dpa", type=str, default=None)
    p.add_argument("--data-parallel-rpc-port", "-dpp", type=int, default=None)
    p.add_argument("--data-parallel-start-rank", "-dpr", type=int, default=None)
    p.add_argument("--data-parallel-rank", "-dpn", type=int, default=None)
    p.add_argument("--headless", action="store_true", default=False)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--enable-expert-parallel", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--served-model-name", type=str, nargs="+", default=None)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--max-model-len", type=human_readable_int, default=None)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--trust-remote-code", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--quantization", "-q", choices=QUANTIZATIONS, default=None)
    for flag in ("--enable-chunked-prefill", "--enable-prefix-caching", "--enforce-eager",
                 "--enable-auto-tool-choice"):
        p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--tool-call-parser", type=str, default=None)
    p.add_argument("--reasoning-parser", type=str, default=None)
    for flag in ("--additional-config", "--compilation-config", "--speculative-config", "--profiler-config",
                 "--kv-transfer-config"):
        p.add_argument(flag, type=json_object, default=None)
    return p


def _add_bench(sub: Any) -> argparse.ArgumentParser:
    bench = sub.add_parser("bench", help="Benchmark a running server.")
    bsub = bench.add_subparsers(dest="bench_type", required=True)
    p = bsub.add_parser("serve", help="Benchmark online serving throughput.")
    p.add_argument("--backend", choices=["vllm", "openai", "openai-chat"], default="vllm")
    p.add_argument("--base-url", type=str, default=None)
    p.add_argument("--host", type=str, default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--endpoint", type=str, default="/v1/completions")
    p.add_argument("--model", type=str, default=None)
    p.add_argument("--served-model-name", type=str, default=None)
    p.add_argument("--dataset-name", choices=["random", "sharegpt", "custom"], default="random")
    p.add_argument("--dataset-path", type=str, default=None)
    p.add_argument("--sharegpt-output-len", type=int, default=None)
    p.add_argument("--custom-output-len", type=int, default=256)
    p.add_argument("--random-input-len", type=int, default=1024)
    p.add_argument("--random-output-len", type=int, default=128)
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--request-rate", type=float, default=float("inf"))
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--num-warmups", type=int, default=0)
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-result", action="store_true")
    p.add_argument("--result-dir", type=str, default=None)
    p.add_argument("--result-filename", type=str, default=None)
    p.add_argument("--percentile-metrics", type=str, default="ttft,tpot,itl")
    p.add_argument("--metric-percentiles", type=str, default="99")
    p.add_argument("--metadata", metavar="KEY=VALUE", nargs="*")
    return p


def build_parsers() -> dict[str, argparse.ArgumentParser]:
    """Parsers keyed by command path: "vllm", "serve", "bench serve"."""
    parser = argparse.ArgumentParser(prog="vllm", description="vLLM CLI (ascend_sim simulator)")
    sub = parser.add_subparsers(dest="subparser", required=True)
    return {"serve": _add_serve(sub), "bench serve": _add_bench(sub), "vllm": parser}


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse with the innermost parser, so errors read ``vllm serve: error: ...`` as in vLLM."""
    parsers = build_parsers()
    if argv[:1] == ["serve"]:
        args = parsers["serve"].parse_args(argv[1:])
        args.subparser = "serve"
        return args
    if argv[:2] == ["bench", "serve"]:
        args = parsers["bench serve"].parse_args(argv[2:])
        args.subparser = "bench"
        return args
    return parsers["vllm"].parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.subparser == "serve":
        from ascend_sim import serve
        return serve.run(args)
    from ascend_sim import bench
    return bench.run(args)


if __name__ == "__main__":
    sys.exit(main())
