"""Engine registry: health state, draining, least-outstanding selection, active health checks."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .http11 import BackendConnectError, BackendIOError, ConnectionPool

ROLES = ("prefill", "decode")
log = logging.getLogger("ascend_pd_proxy")


def parse_instance(text: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError names the bad value."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"instance {text!r} is not host:port (example: 10.0.0.5:6700)")
    return host, int(port)


@dataclass(eq=False)
class Engine:
    role: str
    host: str
    port: int
    up: bool = True
    draining: bool = False
    removed: bool = False
    outstanding: int = 0
    fails: int = 0
    oks: int = 0
    last_error: str = ""
    pool: ConnectionPool = field(init=False)
    key: str = field(init=False)  # host:port ([v6]:port), fixed for the engine's life
    tag: str = field(init=False)  # "p:host:port" or "d:host:port" in the access log

    def __post_init__(self) -> None:
        self.pool = ConnectionPool(self.host, self.port)
        self.key = self.pool.key
        self.tag = f"{self.role[0]}:{self.key}"

    @property
    def routable(self) -> bool:
        return self.up and not self.draining and not self.removed

    def state(self) -> dict[str, object]:
        return {"engine": self.key, "state": "up" if self.up else "down", "draining": self.draining,
                "outstanding": self.outstanding, "consecutive_failures": self.fails,
                "last_error": self.last_error}


class Registry:
    """Engines per role; the event loop is single-threaded so no locks are needed."""

    def __init__(self, failure_threshold: int, success_threshold: int) -> None:
        self.engines: dict[str, list[Engine]] = {r: [] for r in ROLES}
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self._rr = {r: 0 for r in ROLES}

    def find(self, role: str, key: str) -> Engine | None:
        return next((e for e in self.engines[role] if e.key == key), None)

    def add(self, role: str, host: str, port: int) -> Engine | None:
        """Add an engine (None if already present, in which case a drain is lifted)."""
        probe = Engine(role, host, port)
        existing = self.find(role, probe.key)
        if existing:
            existing.draining = False
            return None
        self.engines[role].append(probe)
        log.info("added %s engine %s", role, probe.key)
        return probe

    def remove(self, role: str, key: str) -> bool:
        eng = self.find(role, key)
        if eng is None:
            return False
        eng.removed = True
        eng.pool.close()
        self.engines[role].remove(eng)
        log.info("removed %s engine %s (in-flight requests finish)", role, key)
        return True

    def pick(self, role: str, exclude: set[Engine] | frozenset[Engine]) -> Engine | None:
        """Least outstanding requests among routable engines; ties broken round robin."""
        engines = self.engines[role]
        n = len(engines)
        if not n:
            return None
        start = self._rr[role] % n
        best: Engine | None = None
        low = 1 << 62
        for eng in engines[start:] + engines[:start] if start else engines:
            if eng.outstanding < low and eng.up and not eng.draining and not eng.removed and eng not in exclude:
                best, low = eng, eng.outstanding
                if not low:  # nobody beats an idle engine
                    break
        if best is not None:
            self._rr[role] = start + 1
        return best

    def healthy(self, role: str) -> bool:
        return any(e.routable for e in self.engines[role])

    def mark_failure(self, eng: Engine, reason: str, eject_now: bool = False) -> None:
        eng.fails += 1
        eng.oks = 0
        eng.last_error = reason
        if eng.up and (eject_now or eng.fails >= self.failure_threshold):
            eng.up = False
            eng.pool.close()
            log.warning("ejected %s engine %s: %s", eng.role, eng.key, reason)

    def mark_success(self, eng: Engine) -> None:
        eng.fails = 0
        eng.oks += 1
        if not eng.up and eng.oks >= self.success_threshold:
            eng.up = True
            eng.last_error = ""
            log.warning("re-admitted %s engine %s after %d good health checks", eng.role, eng.key, eng.oks)


async def probe(eng: Engine, timeout: float) -> str | None:
    """GET /health once; None when healthy, else the reason."""
    try:
        async with asyncio.timeout(timeout):
            resp = await eng.pool.request("GET", "/health", {}, b"", timeout, buffered=True)
    except TimeoutError:
        return f"GET /health timed out after {timeout}s"
    except (BackendConnectError, BackendIOError) as exc:
        return str(exc)
    if resp.status != 200:
        return f"GET /health answered {resp.status}"
    return None


async def health_loop(registry: Registry, interval: float, timeout: float) -> None:
    """Probe every engine of every role each interval, concurrently."""
    while True:
        engines = [e for r in ROLES for e in registry.engines[r]]
        results = await asyncio.gather(*(probe(e, timeout) for e in engines))
        for eng, reason in zip(engines, results):
            if eng.removed:
                continue
            if reason is None:
                registry.mark_success(eng)
            else:
                registry.mark_failure(eng, reason)
        await asyncio.sleep(interval)
