#!/usr/bin/env python
"""Bounded load through the PD proxy: counts every outcome and records rotation changes.

c client threads on keep-alive connections alternate non-streaming and streaming completions with
`ignore_eos` and a fixed `max_tokens`, so a complete answer has exactly that many tokens: a 2xx whose body
is empty, not JSON, short of tokens or a stream without `[DONE]` counts as a broken 2xx. A monitor thread
polls GET /healthcheck every --poll seconds and records each engine's state changes with wall-clock
times (time.time(), comparable with a kill time taken on the simulated machines: they share the clock).

    loadgen.py --url http://10.250.0.30:8000 --duration 45 --out result.json [--stop-file F] [--concurrency 4]
               [--until-back S]

It stops after --duration seconds, as soon as --stop-file exists, or (--until-back S) S seconds after every
engine is in rotation again once one had left it (a kill test: the load covers the kill, the ejection, the
restart, the re-admission and S seconds of traffic to the re-admitted engine), whichever is first, and writes
one JSON document to --out. Standard library only; exit 0 when the run itself worked (the caller judges).

    loadgen.py summarize --result result.json [--kill kill.json]

prints the counts plus, given the kill record ({"killed_at", "role", "engine"}), how many seconds after the
kill the victim left rotation and came back, and which other engines left rotation after the kill.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SAMPLES = 5


@dataclass
class Tally:
    """Outcome counters shared by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    broken_2xx: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_times: list[float] = field(default_factory=list)

    def good(self, status: int) -> None:
        with self.lock:
            self.ok += 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1

    def bad(self, status: int | str, what: str, broken: bool) -> None:
        with self.lock:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            (self.broken_2xx if broken else self.errors).append(what[:300])
            self.error_times.append(time.time())


def check_body(raw: bytes, stream: bool, tokens: int) -> str | None:
    """None when a 200 body is a complete answer of `tokens` tokens, else what is wrong with it."""
    if not raw:
        return "empty body"
    try:
        if not stream:
            doc = json.loads(raw)
            got = doc["usage"]["completion_tokens"]
            words = len(doc["choices"][0]["text"].split())
            return None if got == tokens and words == tokens else f"{got} tokens, {words} words, want {tokens}"
        events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        if events[-1:] != ["[DONE]"]:
            return f"stream without [DONE], last event {events[-1:]!r}"
        docs = [json.loads(e) for e in events[:-1]]
        pieces = sum(1 for d in docs if d["choices"] and d["choices"][0]["text"])
        return None if pieces == tokens else f"stream of {pieces} token events, want {tokens}"
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"unparsable body ({exc!r})"


def is_stream_error(raw: bytes) -> bool:
    """A stream the proxy ended with an SSE error event (an error, not a silent truncation)."""
    events = [line[6:] for line in raw.decode(errors="replace").split("\n") if line.startswith("data: ")]
    try:
        return bool(events) and "error" in json.loads(events[-1])
    except ValueError:
        return False


class Client(threading.Thread):
    def __init__(self, idx: int, args: argparse.Namespace, tally: Tally, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.idx, self.args, self.tally, self.stop = idx, args, tally, stop
        url = urlsplit(args.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.args.timeout)

    def _one(self, conn: http.client.HTTPConnection, n: int) -> None:
        stream = self.args.stream == "always" or (self.args.stream == "mixed" and n % 2 == 1)
        body = {"model": self.args.model, "prompt": f"loadgen {self.idx} request {n}", "temperature": 0,
                "max_tokens": self.args.tokens, "ignore_eos": True, "stream": stream}
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if not 200 <= resp.status < 300:
            self.tally.bad(resp.status, f"{resp.status} {raw[:200]!r}", broken=False)
        elif (problem := check_body(raw, stream, self.args.tokens)) is None:
            self.tally.good(resp.status)
        elif stream and is_stream_error(raw):
            self.tally.bad("stream_error", f"stream ended with an error event: {raw[-200:]!r}", broken=False)
        else:
            self.tally.bad(f"{resp.status}_broken", f"{problem}: {raw[:200]!r}", broken=True)

    def run(self) -> None:
        conn, n = self._conn(), 0
        while not self.stop.is_set():
            n += 1
            try:
                self._one(conn, n)
            except (OSError, http.client.HTTPException) as exc:
                self.tally.bad("transport", f"client saw {exc!r}", broken=False)
                conn.close()
                conn = self._conn()
                time.sleep(0.05)
        conn.close()


class Monitor(threading.Thread):
    """Polls /healthcheck; records (time, role, engine, state, draining) whenever one changes."""

    def __init__(self, args: argparse.Namespace, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.args, self.stop = args, stop
        url = urlsplit(args.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.transitions: list[dict] = []
        self.last: dict[str, tuple[str, bool]] = {}
        self.failures = 0
        self.final: dict = {}
        self.seen_out = False                # some engine has left rotation (down or draining)
        self.all_back_at: float | None = None  # since when every engine is up again after that

    def _poll(self) -> dict:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", "/healthcheck")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def run(self) -> None:
        while True:
            try:
                snap = self._poll()
            except (OSError, ValueError, http.client.HTTPException):
                self.failures += 1
            else:
                now = time.time()
                self.final = snap
                out = any(e["state"] != "up" or e["draining"] for r in ("prefill", "decode") for e in snap.get(r, []))
                if out:
                    self.seen_out, self.all_back_at = True, None
                elif self.seen_out and self.all_back_at is None:
                    self.all_back_at = now
                for role in ("prefill", "decode"):
                    for eng in snap.get(role, []):
                        key, seen = f"{role}/{eng['engine']}", (eng["state"], eng["draining"])
                        if self.last.get(key) != seen:
                            self.last[key] = seen
                            self.transitions.append({"t": now, "role": role, "engine": eng["engine"],
                                                     "state": seen[0], "draining": seen[1]})
            if self.stop.is_set():
                return
            time.sleep(self.args.poll)


def first_change(transitions: list[dict], key: str, since: float, state: str) -> float | None:
    """Time of the first transition of `key` ("role/engine") into `state` at or after `since`."""
    return next((t["t"] for t in transitions
                 if f"{t['role']}/{t['engine']}" == key and t["t"] >= since and t["state"] == state), None)


def summarize(result: dict, kill: dict | None) -> dict:
    """Counts and rotation timings of one run; all the arithmetic the verify playbook needs."""
    trans = result["transitions"]
    out = {k: result[k] for k in ("requests", "ok", "errors", "broken_2xx", "statuses", "seconds",
                                  "error_samples", "broken_samples")}
    out["drained"] = sorted({f"{t['role']}/{t['engine']}" for t in trans if t["draining"]})
    out["final_down"] = sorted(f"{r}/{e['engine']}" for r in ("prefill", "decode")
                               for e in result["final"].get(r, []) if e["state"] != "up" or e["draining"])
    if kill is None:
        return out
    at, victim = kill["killed_at"], f"{kill['role']}/{kill['engine']}"
    down = first_change(trans, victim, at, "down")
    up = first_change(trans, victim, down, "up") if down is not None else None
    out["victim"] = victim
    out["left_rotation_s"] = None if down is None else round(down - at, 3)
    out["back_in_rotation_s"] = None if up is None else round(up - at, 3)
    others = {f"{t['role']}/{t['engine']}" for t in trans if t["t"] >= at and t["state"] == "down"} - {victim}
    out["others_left_rotation_s"] = {k: round(first_change(trans, k, at, "down") - at, 3) for k in sorted(others)}
    out["errors_after_kill"] = sum(1 for t in result["error_times"] if t >= at)
    # the victim's complete answers counted by the proxy's /metrics, read right after the kill (a dead
    # engine completes nothing more) and after the load: > 0 means the restarted engine served again
    if kill.get("ok_at_kill") is not None and kill.get("ok_after") is not None:
        out["served_after_restart"] = kill["ok_after"] - kill["ok_at_kill"]
    else:
        out["served_after_restart"] = None
    return out


def summarize_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="loadgen.py summarize")
    ap.add_argument("--result", required=True)
    ap.add_argument("--kill", default="")
    args = ap.parse_args(argv)
    with open(args.result, encoding="utf-8") as fh:
        result = json.load(fh)
    kill = None
    if args.kill:
        with open(args.kill, encoding="utf-8") as fh:
            kill = json.load(fh)
    print(json.dumps(summarize(result, kill)))
    return 0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the proxy, e.g. http://10.250.0.30:8000")
    ap.add_argument("--out", required=True, help="where to write the JSON result")
    ap.add_argument("--duration", type=float, default=45.0, help="upper bound of the run in seconds")
    ap.add_argument("--stop-file", default="", help="stop early once this path exists")
    ap.add_argument("--until-back", type=float, default=0.0, metavar="S",
                    help="stop S seconds after every engine is in rotation again once one had left it (0: off)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=8, help="max_tokens of every request (ignore_eos)")
    ap.add_argument("--stream", choices=["never", "mixed", "always"], default="mixed")
    ap.add_argument("--model", default="glm-5")
    ap.add_argument("--timeout", type=float, default=30.0, help="client socket timeout per request")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between /healthcheck polls")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    tally, stop = Tally(), threading.Event()
    monitor = Monitor(args, stop)
    monitor.start()
    clients = [Client(i, args, tally, stop) for i in range(args.concurrency)]
    started = time.time()
    for c in clients:
        c.start()
    while time.time() - started < args.duration and not (args.stop_file and os.path.exists(args.stop_file)):
        back = monitor.all_back_at
        if args.until_back > 0 and back is not None and time.time() - back >= args.until_back:
            break
        time.sleep(0.1)
    stop.set()
    for c in clients:
        c.join(args.timeout + 5)
    monitor.join(5)
    ended = time.time()
    result = {
        "url": args.url, "concurrency": args.concurrency, "tokens": args.tokens, "started": started,
        "ended": ended, "seconds": round(ended - started, 3), "ok": tally.ok,
        "requests": tally.ok + len(tally.errors) + len(tally.broken_2xx), "statuses": tally.statuses,
        "errors": len(tally.errors), "error_samples": tally.errors[:SAMPLES], "error_times": tally.error_times,
        "broken_2xx": len(tally.broken_2xx), "broken_samples": tally.broken_2xx[:SAMPLES],
        "healthcheck_failures": monitor.failures, "transitions": monitor.transitions, "final": monitor.final,
    }
    tmp = f"{args.out}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    os.replace(tmp, args.out)
    print(json.dumps({k: result[k] for k in ("requests", "ok", "errors", "broken_2xx", "statuses")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(summarize_main(sys.argv[2:]) if sys.argv[1:2] == ["summarize"] else main())
