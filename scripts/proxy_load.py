#!/usr/bin/env python
"""Bounded load through the PD proxy while an operation runs (upgrade, restart).

Runs C client threads that POST /v1/completions to URL until --stop-file appears,
--seconds pass or --max-requests are sent, then prints one JSON summary:
{"sent", "ok", "failed", "empty", "errors": [first few]}. A request counts as
failed on a non-2xx status, a connection error or a body without choices text.
Standard library only. Exit 0 always; the caller judges the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.request


def one_request(url: str, model: str, timeout: float) -> str | None:
    """None on success, else a one-line reason."""
    body = json.dumps({"model": model, "prompt": "upgrade probe", "max_tokens": 4}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if not 200 <= status < 300:
        return f"HTTP {status}"
    try:
        text = json.loads(data)["choices"][0]["text"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "empty or malformed body"
    return None if text else "empty completion text"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--model", default="glm-5")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--max-requests", type=int, default=20000)
    parser.add_argument("--stop-file", default="")
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    lock = threading.Lock()
    counts = {"sent": 0, "ok": 0, "failed": 0, "empty": 0, "errors": []}
    deadline = time.monotonic() + args.seconds

    def worker() -> None:
        while time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file)):
            with lock:
                if counts["sent"] >= args.max_requests:
                    return
                counts["sent"] += 1
            reason = one_request(args.url, args.model, args.timeout)
            with lock:
                if reason is None:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    counts["empty"] += "empty" in reason
                    if len(counts["errors"]) < 10:
                        counts["errors"].append(reason)
            time.sleep(0.05)

    threads = [threading.Thread(target=worker, daemon=True) for _worker in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
