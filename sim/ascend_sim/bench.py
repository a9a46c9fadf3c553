"""``vllm bench serve``: streaming benchmark (random, sharegpt, custom datasets) with vLLM's summary and JSON."""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ascend_sim.openai_api import WORDS

TIMEOUT = 600.0


@dataclass(frozen=True)
class Sample:
    """One request to send: prompt text, its length in tokens (words) and the output tokens to ask for."""

    prompt: str
    prompt_len: int
    output_len: int


@dataclass
class Result:
    """One request's measurements (seconds)."""

    ok: bool = False
    prompt_len: int = 0
    output_tokens: int = 0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    error: str = ""


def _base(args: argparse.Namespace) -> tuple[str, int, str]:
    url = urlsplit(args.base_url or f"http://{args.host}:{args.port}")
    return url.hostname or "127.0.0.1", url.port or 80, url.path.rstrip("/")


def _get_model(args: argparse.Namespace) -> str:
    host, port, prefix = _base(args)
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", f"{prefix}/v1/models")
    return str(json.loads(conn.getresponse().read())["data"][0]["id"])


def _payload(args: argparse.Namespace, model: str, sample: Sample) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": sample.output_len, "stream": True,
                            "stream_options": {"include_usage": True}, "ignore_eos": args.ignore_eos,
                            "temperature": 0.0}
    if args.endpoint.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": sample.prompt}]
    else:
        body["prompt"] = sample.prompt
    return body


def _one(args: argparse.Namespace, body: dict[str, Any], prompt_len: int) -> Result:
    host, port, prefix = _base(args)
    res = Result(prompt_len=prompt_len)
    start = last = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        conn.request("POST", prefix + args.endpoint, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            res.error = f"HTTP {resp.status}: {resp.read()[:300]!r}"
            return res
        while line := resp.readline():
            text = line.decode().strip()
            if not text.startswith("data: ") or text == "data: [DONE]":
                continue
            chunk = json.loads(text[6:])
            if chunk.get("usage"):
                res.output_tokens = chunk["usage"]["completion_tokens"]
            if not chunk.get("choices"):
                continue
            now = time.perf_counter()
            if res.ttft == 0.0:
                res.ttft = now - start
            else:
                res.itl.append(now - last)
            last = now
        res.latency = time.perf_counter() - start
        res.ok = True
        conn.close()
    except (OSError, http.client.HTTPException, json.JSONDecodeError) as err:
        res.error = repr(err)
    return res


def _random_samples(args: argparse.Namespace) -> list[Sample]:
    rng = random.Random(args.seed)
    return [Sample(" ".join(rng.choice(WORDS) for _unused in range(args.random_input_len)), args.random_input_len,
                   args.random_output_len) for _unused in range(args.num_prompts)]


def _sharegpt_samples(args: argparse.Namespace, rows: list[Any]) -> list[Sample]:
    """First human turn as prompt; output length from the answer unless --sharegpt-output-len (vLLM's filter)."""
    pool = []
    for row in rows:
        turns = row.get("conversations") or row.get("conversation") or []
        if len(turns) < 2:
            continue
        prompt, answer = str(turns[0].get("value", "")), str(turns[1].get("value", ""))
        in_len, out_len = len(prompt.split()), args.sharegpt_output_len or len(answer.split())
        if in_len < 4 or out_len < 4 or in_len > 1024 or in_len + out_len > 2048:
            continue
        pool.append(Sample(prompt, in_len, out_len))
    random.Random(args.seed).shuffle(pool)
    return pool[:args.num_prompts]


def _custom_samples(args: argparse.Namespace, text: str) -> list[Sample]:
    """JSON lines with a "prompt" key; every request asks for --custom-output-len tokens."""
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    pool = [Sample(str(r["prompt"]), len(str(r["prompt"]).split()), args.custom_output_len) for r in rows]
    random.Random(args.seed).shuffle(pool)
    return pool[:args.num_prompts]


def _samples(args: argparse.Namespace) -> list[Sample]:
    """The requests of the run; a named dataset needs --dataset-path and must yield at least one request."""
    if args.dataset_name == "random":
        return _random_samples(args)
    if not args.dataset_path:
        raise ValueError(f"--dataset-name {args.dataset_name} needs --dataset-path")
    text = Path(args.dataset_path).read_text()
    samples = (_sharegpt_samples(args, json.loads(text)) if args.dataset_name == "sharegpt"
               else _custom_samples(args, text))
    if not samples:
        raise ValueError(f"{args.dataset_path}: no usable {args.dataset_name} request in it")
    return samples


def _run_all(args: argparse.Namespace, model: str, prompts: list[Sample]) -> list[Result]:
    limit = threading.Semaphore(args.max_concurrency or len(prompts) or 1)
    rng = random.Random(args.seed)
    results: list[Result] = [Result()] * len(prompts)

    def task(i: int) -> None:
        with limit:
            results[i] = _one(args, _payload(args, model, prompts[i]), prompts[i].prompt_len)

    with ThreadPoolExecutor(max_workers=min(len(prompts), args.max_concurrency or 256) or 1) as pool:
        for i in range(len(prompts)):
            pool.submit(task, i)
            if args.request_rate != float("inf"):
                time.sleep(rng.expovariate(args.request_rate))
    return results


def _stats(values_s: list[float], name: str, percentiles: list[float], out: dict[str, Any]) -> None:
    ms = sorted(v * 1000 for v in values_s) or [0.0]
    out[f"mean_{name}_ms"] = statistics.fmean(ms)
    out[f"median_{name}_ms"] = statistics.median(ms)
    out[f"std_{name}_ms"] = statistics.pstdev(ms)
    for p in percentiles:
        pos = p / 100 * (len(ms) - 1)
        low = int(pos)
        high = min(low + 1, len(ms) - 1)
        out[f"p{p:g}_{name}_ms"] = ms[low] + (ms[high] - ms[low]) * (pos - low)


def _summary(out: dict[str, Any], metrics: list[str], percentiles: list[float]) -> None:
    line = "{:<40} {:<10}".format
    fline = "{:<40} {:<10.2f}".format
    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    print(line("Successful requests:", out["completed"]))
    print(line("Failed requests:", out["failed"]))
    print(line("Maximum request concurrency:", str(out["max_concurrency"])))
    print(fline("Benchmark duration (s):", out["duration"]))
    print(line("Total input tokens:", out["total_input_tokens"]))
    print(line("Total generated tokens:", out["total_output_tokens"]))
    print(fline("Request throughput (req/s):", out["request_throughput"]))
    print(fline("Output token throughput (tok/s):", out["output_throughput"]))
    print(fline("Total Token throughput (tok/s):", out["total_token_throughput"]))
    titles = {"ttft": ("Time to First Token", "TTFT"), "tpot": ("Time per Output Token (excl. 1st token)", "TPOT"),
              "itl": ("Inter-token Latency", "ITL"), "e2el": ("End-to-end Latency", "E2EL")}
    for key in metrics:
        header, short = titles[key]
        print("{s:{c}^{n}}".format(s=header, n=50, c="-"))
        print(fline(f"Mean {short} (ms):", out[f"mean_{key}_ms"]))
        print(fline(f"Median {short} (ms):", out[f"median_{key}_ms"]))
        for p in percentiles:
            print(fline(f"P{p:g} {short} (ms):", out[f"p{p:g}_{key}_ms"]))
    print("=" * 50)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``vllm bench serve``."""
    metrics = [m.strip() for m in args.percentile_metrics.split(",") if m.strip()]
    bad = [m for m in metrics if m not in ("ttft", "tpot", "itl", "e2el")]
    if bad:
        print(f"vllm bench serve: error: unknown --percentile-metrics {bad}", file=sys.stderr)
        return 2
    percentiles = sorted({float(p) for p in args.metric_percentiles.split(",") if p.strip()} | {50.0, 99.0})
    try:
        prompts = _samples(args)
    except (OSError, KeyError, TypeError, AttributeError, ValueError) as err:
        print(f"ERROR: cannot load the {args.dataset_name} dataset: {err!r}", file=sys.stderr)
        return 2
    try:
        model = args.served_model_name or args.model or _get_model(args)
        for warm in prompts[:args.num_warmups]:
            _one(args, _payload(args, model, warm), warm.prompt_len)
    except (OSError, http.client.HTTPException, KeyError, IndexError, ValueError) as err:
        print(f"ERROR: cannot reach the server at {_base(args)[0]}:{_base(args)[1]}: {err!r}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    results = _run_all(args, model, prompts)
    duration = time.perf_counter() - start
    done = [r for r in results if r.ok]
    for err in {r.error for r in results if not r.ok}:
        print(f"Request failed: {err}", file=sys.stderr)
    out_tokens = sum(r.output_tokens for r in done)
    in_tokens = sum(r.prompt_len for r in done)
    out: dict[str, Any] = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"), "endpoint_type": args.backend, "backend": args.backend,
        "label": None, "model_id": args.model or model,
        "tokenizer_id": args.model or model, "num_prompts": args.num_prompts,
        "request_rate": args.request_rate if args.request_rate != float("inf") else "inf",
        "burstiness": 1.0, "max_concurrency": args.max_concurrency, "duration": duration,
        "completed": len(done), "failed": len(results) - len(done), "total_input_tokens": in_tokens,
        "total_output_tokens": out_tokens, "request_throughput": len(done) / duration,
        "output_throughput": out_tokens / duration, "total_token_throughput": (in_tokens + out_tokens) / duration,
    }
    for item in args.metadata or []:
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in done if r.output_tokens > 1]
    series = {"ttft": [r.ttft for r in done], "tpot": tpots, "itl": [x for r in done for x in r.itl],
              "e2el": [r.latency for r in done]}
    for key, values in series.items():
        _stats(values, key, percentiles, out)
    _summary(out, metrics, [p for p in percentiles if p in {float(x) for x in args.metric_percentiles.split(",")}])
    if args.save_result:
        base_model = str(out["model_id"]).rsplit("/", maxsplit=1)[-1]
        conc = f"-concurrency{args.max_concurrency}" if args.max_concurrency is not None else ""
        name = args.result_filename or f"{args.backend}-{out['request_rate']}qps{conc}-{base_model}-{out['date']}.json"
        path = Path(args.result_dir or ".") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2))
    return 0 if done else 1
