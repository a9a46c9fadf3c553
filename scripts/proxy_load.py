#!/usr/bin/env python
"""Bounded load through the PD proxy while an operation runs (upgrade, restart).

Runs C client threads that POST /v1/completions to URL until --stop-file appears,
--seconds pass or --max-requests are sent, then prints one JSON summary (and writes
it to --out when given):
{"sent", "ok", "failed", "empty", "statuses", "errors": [first few],
 "error_times": [first few], "started", "finished"}.
A request counts as failed on a non-2xx status, a connection error, a body without
choices text or, with --tokens, an answer of another length than asked for.
`started`/`finished`/`error_times` are wall-clock seconds (time.time()), comparable
with times a playbook notes around the operation. Standard library only. Exit 0
always; the caller judges the counts.

    proxy_load.py http://10.250.0.30:8000 --concurrency 4 --stop-file /tmp/stop --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.request

SAMPLES = 10


def one_request(url: str, model: str, timeout: float, tokens: int, check_tokens: bool) -> tuple[str, str | None]:
    """(status, None) on success, else (status, a one-line reason)."""
    body = json.dumps({"model": model, "prompt": "upgrade probe", "max_tokens": tokens,
                       "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace") if exc.fp else ""
        return str(exc.code), f"HTTP {exc.code} {detail}".strip()
    except (OSError, urllib.error.URLError) as exc:
        return "connection", f"{type(exc).__name__}: {exc}"
    if not 200 <= status < 300:
        return str(status), f"HTTP {status}"
    try:
        doc = json.loads(data)
        text = doc["choices"][0]["text"]
        got = doc.get("usage", {}).get("completion_tokens")
    except (ValueError, KeyError, IndexError, TypeError):
        return str(status), "empty or malformed body"
    if not text:
        return str(status), "empty completion text"
    if check_tokens and got != tokens:
        return str(status), f"short answer: {got} completion tokens, asked for {tokens}"
    return str(status), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--model", default="glm-5")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--max-requests", type=int, default=20000)
    parser.add_argument("--stop-file", default="")
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--tokens", type=int, default=4, help="max_tokens of every request (ignore_eos is set)")
    parser.add_argument("--check-tokens", action="store_true",
                        help="count an answer whose usage.completion_tokens differs from --tokens as failed")
    parser.add_argument("--out", default="", help="also write the JSON summary to this file")
    args = parser.parse_args()
    lock = threading.Lock()
    counts: dict = {"sent": 0, "ok": 0, "failed": 0, "empty": 0, "statuses": {}, "errors": [],
                    "error_times": [], "started": time.time(), "finished": None}
    deadline = time.monotonic() + args.seconds

    def worker() -> None:
        while time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file)):
            with lock:
                if counts["sent"] >= args.max_requests:
                    return
                counts["sent"] += 1
            status, reason = one_request(args.url, args.model, args.timeout, args.tokens, args.check_tokens)
            with lock:
                counts["statuses"][status] = counts["statuses"].get(status, 0) + 1
                if reason is None:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    counts["empty"] += "empty" in reason
                    if len(counts["errors"]) < SAMPLES:
                        counts["errors"].append(reason[:300])
                        counts["error_times"].append(time.time())
            time.sleep(0.05)

    threads = [threading.Thread(target=worker, daemon=True) for _worker in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts["finished"] = time.time()
    text = json.dumps(counts)
    if args.out:
        tmp = f"{args.out}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, args.out)
    print(text, flush=True)


if __name__ == "__main__":
    main()
