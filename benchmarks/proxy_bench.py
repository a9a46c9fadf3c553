#!/usr/bin/env python
"""Benchmark the PD proxy backends on loopback with the same fake engines, interleaved.

Backends: ascend_pd_proxy (the collection's default) on uvloop and on the standard library's asyncio loop (--loop),
vllm-router 0.1.17 (--policy round_robin, installed from PyPI into /tmp/vllm-router-venv on first use) and the
client doing prefill then decode itself (the baseline). The uvloop row needs uvloop importable by this Python
(`.venv/bin/pip install uvloop`; requirements.txt pins it); without it that row is left out.
The vllm-ascend example proxy (load_balance_proxy_server_example.py) is not a PyPI package: its numbers come from
/work/shared/notes/VLLM_ROUTER.md and it is not re-run here.

Loopback only, fake engines from tests/proxy/fake_worker.py (2 prefill + 4 decode), non-streaming
/v1/completions with max_tokens 16. Modes are interleaved round by round so drift hits all alike.
Reports added latency p50/p99 at c=1 and c=32, proxy CPU ms per request (/proc/PID/stat utime+stime),
peak RSS (VmHWM) and, with one decode engine SIGKILLed under c=4 load, requests that got an error and
2xx answers with an empty or truncated body.

    .venv/bin/python benchmarks/proxy_bench.py [--rounds 3] [--requests 400] [--no-router]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "proxy" / "fake_worker.py"
ROUTER_VENV = Path("/tmp/vllm-router-venv")
BODY = {"model": "glm-5", "prompt": "The future of AI is", "max_tokens": 16, "temperature": 0}
PREFILL_KV = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
              "remote_block_ids": None, "remote_host": None, "remote_port": None}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCS: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], port: int, env: dict[str, str] | None = None, wait: float = 20.0) -> subprocess.Popen:
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
    PROCS.append(proc)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read()[-1500:].decode(errors="replace")
            raise SystemExit(f"{argv[:3]} exited with {proc.returncode} before listening on {port}:\n{tail}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {wait}s ({argv[:3]})")


def worker(role: str, port: int | None = None) -> int:
    port = port or free_port()
    spawn([sys.executable, str(WORKER), "--port", str(port), "--role", role], port)
    return port


def post(conn: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, bytes]:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


class Direct:
    """The client does prefill then decode itself, round robin over the engines."""

    def __init__(self, prefill: list[int], decode: list[int]) -> None:
        self.p, self.d = itertools.cycle(prefill), itertools.cycle(decode)
        self.lock = threading.Lock()
        self.local = threading.local()

    def _conn(self, port: int) -> http.client.HTTPConnection:
        conns = self.local.__dict__.setdefault("conns", {})
        if port not in conns:
            conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        return conns[port]

    def call(self) -> tuple[int, bytes]:
        with self.lock:
            p, d = next(self.p), next(self.d)
        pre = {**BODY, "max_tokens": 1, "min_tokens": 1, "stream": False, "kv_transfer_params": PREFILL_KV}
        _unused, raw = post(self._conn(p), "/v1/completions", pre)
        kv = json.loads(raw)["kv_transfer_params"]
        return post(self._conn(d), "/v1/completions", {**BODY, "kv_transfer_params": kv})


class Via:
    """The client sends one request to a proxy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def call(self) -> tuple[int, bytes]:
        conn = self.local.__dict__.get("conn")
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            return post(conn, "/v1/completions", BODY)
        except (OSError, http.client.HTTPException):
            self.local.conn = None
            conn.close()
            raise


def run_load(target, concurrency: int, total: int) -> list[float]:
    """`total` requests over `concurrency` threads; latencies in seconds of the 200 answers."""
    lat: list[float] = []
    lock = threading.Lock()
    left = iter(range(total))

    def loop() -> None:
        mine = []
        while True:
            with lock:
                if next(left, None) is None:
                    break
            t0 = time.perf_counter()
            status, _unused = target.call()
            if status == 200:
                mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=loop) for _unused in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def kill_test(make_proxy, decode_role_port_factory) -> str:
    """c=4 load for 4 s through a fresh proxy; SIGKILL one of its decode engines at 1.5 s."""
    decode = [decode_role_port_factory() for _unused in range(2)]
    prefill = [worker("prefill")]
    target, _pid = make_proxy(prefill, decode)
    stop, counts, lock = threading.Event(), {"ok": 0, "error": 0, "empty_2xx": 0}, threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            try:
                status, raw = target.call()
            except (OSError, http.client.HTTPException):
                status, raw = 0, b""
            if not 200 <= status < 300:
                outcome = "error"
            else:
                try:
                    whole = json.loads(raw)["choices"][0]["text"].count("t") == 16
                except (ValueError, KeyError, IndexError, TypeError):
                    whole = False
                outcome = "ok" if whole else "empty_2xx"
            with lock:
                counts[outcome] += 1

    threads = [threading.Thread(target=loop) for _unused in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    victim = next(p for p in PROCS if str(decode[0]) in p.args)
    os.kill(victim.pid, signal.SIGKILL)
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join()
    total = sum(counts.values())
    return f"{counts['error']} errors, {counts['empty_2xx']} empty/truncated 2xx / {total}"


def ours(prefill: list[int], decode: list[int], loop: str = "auto"):
    port = free_port()
    argv = [sys.executable, "-m", "ascend_pd_proxy", "--host", "127.0.0.1", "--port", str(port), "--loop", loop,
            "--prefiller-hosts", *["127.0.0.1"] * len(prefill), "--prefiller-ports", *map(str, prefill),
            "--decoder-hosts", *["127.0.0.1"] * len(decode), "--decoder-ports", *map(str, decode)]
    proc = spawn(argv, port, {**os.environ, "PYTHONPATH": str(ROOT / "proxy")})
    return Via(port), proc.pid


def ours_on(loop: str):
    return lambda prefill, decode: ours(prefill, decode, loop)


def router(prefill: list[int], decode: list[int]):
    port = free_port()
    argv = [str(ROUTER_VENV / "bin" / "vllm-router"), "--vllm-pd-disaggregation", "--host", "127.0.0.1",
            "--port", str(port), "--policy", "round_robin", "--prometheus-port", str(free_port())]
    for p in prefill:
        argv += ["--prefill", f"http://127.0.0.1:{p}"]
    for d in decode:
        argv += ["--decode", f"http://127.0.0.1:{d}"]
    proc = spawn(argv, port, wait=60)
    return Via(port), proc.pid


def ensure_router() -> None:
    if not (ROUTER_VENV / "bin" / "vllm-router").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ROUTER_VENV)], check=True)
        subprocess.run([str(ROUTER_VENV / "bin" / "pip"), "install", "-q", "vllm-router==0.1.17"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=400, help="requests per mode, round and concurrency")
    ap.add_argument("--no-router", dest="with_router", action="store_false",
                    help="skip vllm-router 0.1.17 (installed from PyPI into its own venv on first use)")
    args = ap.parse_args()
    if args.with_router:
        ensure_router()
    loops = ["uvloop", "asyncio"] if importlib.util.find_spec("uvloop") else ["asyncio"]
    load_before = os.getloadavg()
    try:
        prefill = [worker("prefill") for _unused in range(2)]
        decode = [worker("decode") for _unused in range(4)]
        modes = {"direct": (Direct(prefill, decode), None)}
        for loop in loops:
            modes[f"ascend_pd_proxy {loop}"] = ours(prefill, decode, loop)
        if args.with_router:
            modes["vllm-router rr"] = router(prefill, decode)
        lat = {(m, c): [] for m in modes for c in (1, 32)}
        cpu = {(m, c): 0.0 for m in modes for c in (1, 32)}
        count = {(m, c): 0 for m in modes for c in (1, 32)}
        for name, (target, _unused) in modes.items():
            run_load(target, 4, 100)  # warm-up: connections, caches
        for _unused in range(args.rounds):
            for c in (1, 32):
                for name, (target, pid) in modes.items():
                    before = cpu_seconds(pid) if pid else 0.0
                    got = run_load(target, c, args.requests)
                    lat[(name, c)] += got
                    if pid:
                        cpu[(name, c)] += cpu_seconds(pid) - before
                        count[(name, c)] += len(got)
        kills = {f"ascend_pd_proxy {loop}": kill_test(ours_on(loop), lambda: worker("decode")) for loop in loops}
        if args.with_router:
            kills["vllm-router rr"] = kill_test(router, lambda: worker("decode"))
        print(f"{time.strftime('%Y-%m-%d %H:%M')} on {socket.gethostname()} ({os.cpu_count()} CPUs), load average "
              f"{load_before[0]:.1f} before and {os.getloadavg()[0]:.1f} after; {args.rounds} rounds x "
              f"{args.requests} requests per mode and concurrency")
        if "uvloop" not in loops:
            print("uvloop is not importable here: the ascend_pd_proxy uvloop row is left out")
        report(modes, lat, cpu, count, kills)
    finally:
        for proc in PROCS:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def report(modes, lat, cpu, count, kills) -> None:
    base = {c: (statistics.median(lat[("direct", c)]), pct(lat[("direct", c)], 99)) for c in (1, 32)}
    print(f"direct baseline: c=1 p50 {base[1][0] * 1e3:.3f} ms p99 {base[1][1] * 1e3:.3f} ms; "
          f"c=32 p50 {base[32][0] * 1e3:.3f} ms p99 {base[32][1] * 1e3:.3f} ms")
    head = ("mode", "c=1 +p50 ms", "c=1 +p99 ms", "c=1 p50 ratio", "c=32 +p50 ms", "c=32 +p99 ms",
            "c=32 p50 ratio", "CPU ms/req c=1", "CPU ms/req c=32", "peak RSS MiB", "kill test")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, (_unused, pid) in modes.items():
        if pid is None:
            continue
        row = [name]
        for c in (1, 32):
            p50, p99 = statistics.median(lat[(name, c)]), pct(lat[(name, c)], 99)
            row += [f"{(p50 - base[c][0]) * 1e3:+.3f}", f"{(p99 - base[c][1]) * 1e3:+.3f}", f"{p50 / base[c][0]:.2f}x"]
        row += [f"{cpu[(name, c)] * 1e3 / max(count[(name, c)], 1):.3f}" for c in (1, 32)]
        row += [f"{peak_rss_mib(pid):.1f}", kills.get(name, "-")]
        print("| " + " | ".join(row) + " |")
    print("| vllm-ascend example proxy | not re-run: measured in /work/shared/notes/VLLM_ROUTER.md "
          "(+2.9 ms at c=1, 4.0 ms CPU per request, HTTP 200 with an empty body when a decode worker dies) |")


if __name__ == "__main__":
    main()
