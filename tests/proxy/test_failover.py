"""SIGKILL an engine under steady load: no broken 2xx, few errors, ejection and re-admission in time."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import pytest

from proxy_support import engine_state, wait_until

HEALTH_INTERVAL = 0.3
FAILURE_THRESHOLD = 2
# probes run every interval and time out after 0.5 s; a refused connection during a request ejects at once
DETECTION_WINDOW = HEALTH_INTERVAL * (FAILURE_THRESHOLD + 1) + 0.5


@dataclass
class Load:
    """c client threads on keep-alive connections, alternating streaming and non-streaming requests."""

    port: int
    concurrency: int = 4
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    broken_2xx: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _one(self, conn: http.client.HTTPConnection, stream: bool) -> None:
        body = {"model": "glm-5", "prompt": "x", "max_tokens": 4, "stream": stream}
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            with self.lock:
                self.errors.append(f"{resp.status} {raw[:200]!r}")
            return
        if stream:
            events = [ln[6:] for ln in raw.decode().split("\n") if ln.startswith("data: ")]
            complete = events[-1:] == ["[DONE]"] and [json.loads(e)["choices"][0]["text"] for e in events[:-1]] \
                == ["t0", "t1", "t2", "t3"]
            aborted = bool(events) and "error" in json.loads(events[-1]) if events[-1:] != ["[DONE]"] else False
        else:
            try:
                complete = json.loads(raw)["choices"][0]["text"] == "t0 t1 t2 t3"
            except ValueError:
                complete = False
            aborted = False
        with self.lock:
            if complete:
                self.ok += 1
            elif aborted:
                self.errors.append(f"stream ended with an error event: {raw[-200:]!r}")
            else:
                self.broken_2xx.append(repr(raw[:300]))

    def _client(self, idx: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = idx
        while not self.stop.is_set():
            n += 1
            try:
                self._one(conn, stream=n % 2 == 0)
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.errors.append(f"client saw {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(self.concurrency)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)


@pytest.mark.parametrize("role", ["decode", "prefill"])
def test_kill_engine_under_load(cluster, role):
    prefill = [cluster.worker("prefill") for _unused in range(2 if role == "prefill" else 1)]
    decode = [cluster.worker("decode") for _unused in range(2 if role == "decode" else 1)]
    victim = (prefill if role == "prefill" else decode)[0]
    proxy = cluster.proxy(prefill, decode, "--failure-threshold", str(FAILURE_THRESHOLD), "--max-retries", "2")

    with Load(proxy) as load:
        time.sleep(1.5)
        cluster.kill_worker(victim)
        took = wait_until(lambda: engine_state(proxy, role, victim)["state"] == "down", DETECTION_WINDOW, 0.02)
        time.sleep(2.0)
        served_while_down = sum(1 for b in cluster.bodies() if b["port"] == victim)
        cluster.worker(role, victim)
        back = wait_until(lambda: engine_state(proxy, role, victim)["state"] == "up", 3.0, 0.02)
        time.sleep(1.5)
    served_after = sum(1 for b in cluster.bodies() if b["port"] == victim)

    assert load.broken_2xx == [], f"2xx answers with empty/truncated bodies: {load.broken_2xx[:3]}"
    assert len(load.errors) <= 2, f"{len(load.errors)} errors, first: {load.errors[:3]}"
    assert load.ok > 100, f"only {load.ok} good answers in ~5 s"
    assert took < DETECTION_WINDOW
    assert back < 3.0
    assert served_after > served_while_down, "the restarted engine got no traffic after re-admission"


def test_engine_answering_5xx_leaves_rotation_at_once(cluster):
    """A fast 503 engine would draw least-outstanding traffic; the proxy probes it on the first 5xx and ejects it."""
    prefill = [cluster.worker("prefill")]
    good = cluster.worker("decode")
    broken = cluster.worker("decode", None, "--fail-status", "503")
    proxy = cluster.proxy(prefill, [broken, good], "--health-interval", "30", "--max-retries", "1")
    took = None
    statuses = []
    start = time.monotonic()
    for _unused in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
        conn.request("POST", "/v1/completions", json.dumps({"model": "glm-5", "prompt": "x", "max_tokens": 2}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        statuses.append((resp.status, json.loads(resp.read())["choices"][0]["text"] if resp.status == 200 else ""))
        conn.close()
        if took is None and engine_state(proxy, "decode", broken)["state"] == "down":
            took = time.monotonic() - start
    assert statuses == [(200, "t0 t1")] * 20, statuses
    assert took is not None and took < 2.0, "the 503 engine stayed in rotation though health probes are 30 s apart"
    assert "GET /health answered 503" in engine_state(proxy, "decode", broken)["last_error"]
