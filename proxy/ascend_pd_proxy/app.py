"""The PD proxy: routes each completion through a prefill engine then a decode engine, with failover."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import NoReturn, cast

from . import jsonfast
from .engines import ROLES, Engine, Registry, health_loop, parse_instance, probe
from .http11 import (LAST_CHUNK, BackendConnectError, BackendIOError, ClientResponse, Request, ServerConnection,
                     StreamedResponse, chunk, full_response, response_head)
from .metrics import Metrics

log = logging.getLogger("ascend_pd_proxy")
JSON = "application/json"
COMPLETION_PATHS = ("/v1/completions", "/v1/chat/completions")
PREFILL_KV = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
              "remote_block_ids": None, "remote_host": None, "remote_port": None}


@dataclass
class Settings:
    max_retries: int = 2
    request_timeout: float = 600.0
    health_interval: float = 2.0
    health_timeout: float = 1.0
    # When every engine of one role is out of rotation, the other role serves whole requests (its engines
    # prefill locally, no KV transfer): "drained" only when they were all drained on purpose (a planned
    # restart or upgrade of the only instance of a role), "always" also when they are down, "off" never.
    fallback: str = "drained"


class AccessLog:
    """One line per client request, to stderr in the layout of the other log lines.

    logging's record machinery (record, caller lookup, asctime) cost about a tenth of the proxy's CPU per
    request; this formats the same line with one cached timestamp per second. Lines are written in batches, at
    most FLUSH_SECONDS after the request ended (and at exit), instead of one write system call per request.
    Off below INFO.
    """

    FLUSH_SECONDS = 0.2
    FLUSH_BYTES = 64 * 1024

    def __init__(self) -> None:
        self.enabled = log.isEnabledFor(logging.INFO)
        self._sec = -1
        self._stamp = ""
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def write(self, method: str, path: str, status: int, engines: list[str], retries: int, seconds: float) -> None:
        if not self.enabled:
            return
        now = time.time()
        sec = int(now)
        if sec != self._sec:
            self._sec, self._stamp = sec, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
        line = (f"{self._stamp},{int((now - sec) * 1000):03d} INFO ascend_pd_proxy {method} {path} "
                f"status={status or 'aborted'} engines={','.join(engines) or '-'} retries={retries} "
                f"duration_ms={seconds * 1000:.1f}\n")
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.FLUSH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines, self._size = self._lines, [], 0
            try:
                sys.stderr.write("".join(lines))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


class Failure(Exception):
    """A backend attempt failed; `retriable` failures may go to another engine."""

    def __init__(self, status: int, kind: str, message: str, eng: Engine | None, role: str,
                 retriable: bool) -> None:
        super().__init__(message)
        self.status, self.kind, self.eng, self.role, self.retriable = status, kind, eng, role, retriable

    def body(self) -> bytes:
        err = {"message": str(self), "type": self.kind, "engine": self.eng.key if self.eng else None,
               "role": self.role}
        return json.dumps({"error": err}).encode()


class Answered5xx(Failure):
    """The backend read the request and answered 5xx (a decode engine: it may have failed on the KV handle)."""


class FallBack(Exception):
    """No engine of one role can take the request; serve it whole on an engine of `role` (--fallback)."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


class Passthrough(Exception):
    """A backend answered a client error (4xx): hand it to the client unchanged."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        super().__init__(status)
        self.status, self.content_type, self.body = status, content_type, body


class Attempt:
    """Book-keeping for one client completion request (rarely set fields default at class level)."""

    body: dict
    retries = 0
    tried: dict[str, set[Engine]] | None = None
    serve = "decode"  # the role whose engine produces the answer ("prefill" while decode falls back)
    fallback = False
    _prefill: bytes | None = None
    _splice: bool | None = None

    def __init__(self, path: str, raw: bytes, extra: bytes, rid: str) -> None:
        self.path = path
        self.raw = raw  # the client's body as received
        self.extra = extra  # header lines every backend request of this client request carries
        self.rid = rid
        self.used: list[str] = []

    def excluded(self, role: str) -> set[Engine] | frozenset[Engine]:
        return NOTHING if self.tried is None else self.tried[role]

    def exclude(self, role: str, eng: Engine) -> None:
        if self.tried is None:
            self.tried = {r: set() for r in ROLES}
        self.tried[role].add(eng)

    def prefill_payload(self) -> bytes:
        """The prefill request body, serialised once per client request (retries reuse it)."""
        if self._prefill is None:
            self._prefill = jsonfast.dumps(prefill_body(self.body))
        return self._prefill

    def decode_payload(self, kv: bytes | None) -> bytes:
        """The client body plus the prefill's kv_transfer_params (kv: its JSON text, None when it had none).

        A UTF-8 JSON object without kv_transfer_params of its own gets the field spliced in before its closing
        brace: the client's bytes are not parsed into text and serialised again.
        """
        if self._splice is None:
            raw = self.raw
            self._splice = (bool(self.body) and "kv_transfer_params" not in self.body
                            and raw.lstrip()[:1] == b"{" and raw.rstrip()[-1:] == b"}")
        if self._splice:
            if kv is None:
                return self.raw
            raw = self.raw
            return b'%s,"kv_transfer_params":%s}' % (raw[:raw.rindex(b"}")], kv)
        if kv is None:
            return jsonfast.dumps(self.body)
        return jsonfast.dumps({**self.body, "kv_transfer_params": jsonfast.loads(kv)})


NOTHING: frozenset[Engine] = frozenset()


def error_json(status: int, kind: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"message": message, "type": kind}}).encode()


def prefill_body(body: dict) -> dict:
    """The client body turned into a prefill-only request (one token, no stream, remote decode)."""
    out = dict(body)
    out["max_tokens"] = 1
    out["min_tokens"] = 1
    if "max_completion_tokens" in out:
        out["max_completion_tokens"] = 1
    out["stream"] = False
    out.pop("stream_options", None)
    out["kv_transfer_params"] = dict(PREFILL_KV)
    return out


def _bad_request(message: str) -> bytes:
    status, body = error_json(400, "bad_request", message)
    return full_response(status, JSON, body, False)


class Proxy:
    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = Metrics()
        self.access = AccessLog()
        self._health_task: asyncio.Task | None = None
        self._rechecks: set[asyncio.Task] = set()
        self._suspects: set[Engine] = set()
        self._routes = {("GET", "/healthcheck"): self._healthcheck, ("GET", "/health"): self._healthcheck,
                        ("GET", "/metrics"): self._metrics_page, ("GET", "/v1/models"): self._models,
                        ("POST", "/instances/add"): self._admin, ("POST", "/instances/remove"): self._admin,
                        ("POST", "/instances/drain"): self._admin, ("POST", "/instances/undrain"): self._admin}
        key = os.environ.get("OPENAI_API_KEY")
        self._env_auth = f"Authorization: Bearer {key}\r\n".encode("latin-1") if key else b""
        # request ids: a random per-process prefix and a counter, 32 hex digits like uuid4().hex
        self._rid_prefix = os.urandom(8).hex()
        self._rid_counter = itertools.count(1)

    # ---- connection handling -------------------------------------------------------------
    async def serve(self, host: str, port: int) -> asyncio.Server:
        self._health_task = asyncio.create_task(
            health_loop(self.registry, self.settings.health_interval, self.settings.health_timeout))
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: ServerConnection(self._dispatch, _bad_request), host, port,
                                        backlog=1024)

    async def _dispatch(self, req: Request, conn: ServerConnection) -> bool:
        """Answer one request; False when the connection must close."""
        path, method = req.path, req.method
        if method == "POST" and path in COMPLETION_PATHS:
            return await self._completion(req, conn)
        handler = self._routes.get((method, path))
        if handler is None:
            status, body = error_json(404, "not_found", f"no route for {method} {path}")
            ctype = JSON
        else:
            status, ctype, body = await handler(req)
        conn.write(full_response(status, ctype, body, req.keep_alive))
        await conn.drain()
        return True

    # ---- admin and observability ---------------------------------------------------------
    def _snapshot(self) -> dict[str, object]:
        state: dict[str, object] = {r: [e.state() for e in self.registry.engines[r]] for r in ROLES}
        down = [r for r in ROLES if not self.registry.healthy(r)]
        # degraded: one role is out but the other serves whole requests (--fallback); still HTTP 200 so a load
        # balancer in front keeps the proxy in rotation during a planned restart of a role's only instance
        covered = len(down) == 1 and self._fallback_for(down[0]) is not None
        state["status"] = "ok" if not down else "degraded" if covered else "unavailable"
        state["fallback"] = self.settings.fallback
        for role in ROLES:
            state[f"{role}_instances"] = len(self.registry.engines[role])
        return state

    async def _healthcheck(self, _req: Request) -> tuple[int, str, bytes]:
        snap = self._snapshot()
        return (503 if snap["status"] == "unavailable" else 200), JSON, json.dumps(snap).encode()

    async def _metrics_page(self, _req: Request) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4", self.metrics.render(self.registry)

    async def _models(self, req: Request) -> tuple[int, str, bytes]:
        tried: set[Engine] = set()
        auth = {"Authorization": req.headers["authorization"]} if "authorization" in req.headers else {}
        if not auth and self._env_auth:
            auth = {"Authorization": self._env_auth.decode("latin-1").split(": ", 1)[1].strip()}

        def next_engine() -> Engine | None:
            eng = self.registry.pick("decode", tried)
            if eng is None and self._fallback_for("decode") == "prefill":
                eng = self.registry.pick("prefill", tried)
            return eng
        while (eng := next_engine()) is not None:
            tried.add(eng)
            try:
                resp = await eng.pool.request("GET", "/v1/models", auth, b"", self.settings.health_timeout * 5,
                                              buffered=True)
            except BackendConnectError as exc:
                self.registry.mark_failure(eng, str(exc), eject_now=True)
                continue
            except (BackendIOError, TimeoutError):
                continue
            return resp.status, resp.headers.get("content-type", JSON), resp.body
        status, body = error_json(503, "no_healthy_engine", "no healthy engine answered GET /v1/models")
        return status, JSON, body

    async def _admin(self, req: Request) -> tuple[int, str, bytes]:
        action = req.path.rsplit("/", 1)[1]
        try:
            data = json.loads(req.body or b"{}")
            role = data.get("type", "")
            items = data.get("instances", [])
            items = [items] if isinstance(items, str) else list(items)
            if role not in ROLES:
                raise ValueError(f"type {role!r} is not supported; use 'prefill' or 'decode'")
            parsed = [parse_instance(i) for i in items]
        except (ValueError, AttributeError, TypeError) as exc:
            status, body = error_json(400, "bad_request", f"/instances/{action}: {exc}")
            return status, JSON, body
        keys = [Engine(role, h, p).key for h, p in parsed]
        unknown = [k for k in keys if action != "add" and self.registry.find(role, k) is None]
        if unknown:
            status, body = error_json(404, "unknown_instance", f"no {role} engine {unknown}; see GET /healthcheck")
            return status, JSON, body
        for (host, port), key in zip(parsed, keys):
            if action == "add":
                eng = self.registry.add(role, host, port)
                if eng is not None:
                    eng.up = False
            elif action == "remove":
                self.registry.remove(role, key)
            else:
                self.registry.find(role, key).draining = action == "drain"  # type: ignore[union-attr]
        msg = f"{action} {role} instances: {keys}"
        if action == "add":
            msg += f"; they enter rotation after {self.registry.success_threshold} good health checks"
        log.info("admin %s", msg)
        out = {"message": msg,
               **{f"current_{r}_instances": [e.key for e in self.registry.engines[r]] for r in ROLES},
               "engines": [e.state() for e in self.registry.engines[role] if e.key in keys]}
        return 200, JSON, json.dumps(out).encode()

    # ---- the PD flow ---------------------------------------------------------------------
    def _backend_headers(self, headers: dict[str, str], rid: str) -> bytes:
        auth = headers.get("authorization")
        auth_line = f"Authorization: {auth}\r\n".encode("latin-1") if auth is not None else self._env_auth
        return b"Content-Type: application/json\r\nX-Request-Id: %s\r\n%s" % (rid.encode("latin-1"), auth_line)

    async def _completion(self, req: Request, conn: ServerConnection) -> bool:
        start = time.monotonic()
        headers = req.headers
        rid = headers.get("x-request-id") or f"{self._rid_prefix}{next(self._rid_counter):016x}"
        att = Attempt(req.path, req.body, self._backend_headers(headers, rid), rid)
        att.body = {}
        keep, status = True, 0
        try:
            try:
                att.body = jsonfast.loads(req.body)  # type: ignore[assignment]
                if not isinstance(att.body, dict):
                    raise ValueError("the JSON body must be an object")
            except ValueError as exc:
                status, data = error_json(400, "bad_request", f"request body is not valid JSON: {exc}")
                conn.write(full_response(status, JSON, data, req.keep_alive))
            else:
                if att.body.get("stream"):
                    status, keep = await self._run_stream(att, conn, req.keep_alive)
                else:
                    try:
                        status, ctype, data = await self._with_failover(att, self._decode_buffered)
                        extra = b"X-Request-Id: %s\r\n" % rid.encode("latin-1")
                    except Failure as f:
                        status, ctype, data, extra = f.status, JSON, f.body(), b""
                    except Passthrough as p:
                        status, ctype, data, extra = p.status, p.content_type, p.body, b""
                    conn.write(full_response(status, ctype, data, req.keep_alive, extra))
        finally:
            dur = time.monotonic() - start
            self.metrics.observe(dur)
            self.access.write(req.method, req.path, status, att.used, att.retries, dur)
        return keep

    async def _run_stream(self, att: Attempt, conn: ServerConnection, keep_alive: bool) -> tuple[int, bool]:
        try:
            eng, resp, first = await self._with_failover(att, self._decode_stream_open)
        except Failure as f:
            conn.write(full_response(f.status, JSON, f.body(), keep_alive))
            await conn.drain()
            return f.status, True
        except Passthrough as p:
            conn.write(full_response(p.status, p.content_type, p.body, keep_alive))
            await conn.drain()
            return p.status, True
        return 200, await self._pump(att, eng, resp, first, conn)

    async def _with_failover(self, att: Attempt, decode):
        """Prefill then decode; retriable failures move to another engine within --max-retries."""
        kv: bytes | None = None
        p_eng: Engine | None = None
        last: Failure | None = None
        while True:
            try:
                if att.fallback:
                    return await decode(att, None)
                if not self.registry.healthy("decode"):  # no prefill whose KV nobody would fetch
                    self._no_engine(att, "decode")
                if kv is None or p_eng is None or not p_eng.up:
                    p_eng, kv = await self._prefill(att)
                return await decode(att, kv)
            except FallBack as fb:
                att.fallback, att.serve = True, fb.role
                self.metrics.fallbacks[fb.role] += 1
            except Failure as f:
                last = f
                if not f.retriable or att.retries >= self.settings.max_retries:
                    raise
                if f.eng is not None:
                    att.exclude(f.role, f.eng)
                if (self.registry.pick(f.role, att.excluded(f.role)) is None
                        and (att.fallback or self._fallback_for(f.role) is None)):
                    raise
                if f.role == "decode" and isinstance(f, Answered5xx):
                    # the decode engine read the KV handle and refused it (e.g. "KV handshake failed": the
                    # prefill died after answering, before the proxy noticed): prefill again (issue 9)
                    kv = None
                att.retries += 1
                self.metrics.retries += 1
                log.warning("retrying %s on another %s engine after %s", att.path, f.role, last)

    def _fallback_for(self, role: str) -> str | None:
        """The other role, when `role` has no engine left to take a request and --fallback lets the other serve
        whole requests (called only once routing found no engine: nothing on the hot path)."""
        mode = self.settings.fallback
        if mode == "off":
            return None
        if mode == "drained":
            engines = self.registry.engines[role]
            if not engines or not all(e.draining for e in engines):
                return None
        other = "decode" if role == "prefill" else "prefill"
        return other if self.registry.healthy(other) else None

    def _suspect(self, eng: Engine) -> None:
        """After a broken connection or a 5xx, probe the engine now (once at a time); eject it if that fails.

        A 5xx engine answers fast, so least-outstanding routing would favour it: without this it would
        draw traffic until the periodic probes eject it (a vLLM DP group with a dead rank answers 503).
        """
        if eng in self._suspects or not eng.up:
            return

        async def recheck() -> None:
            try:
                reason = await probe(eng, self.settings.health_timeout)
                if reason is not None and not eng.removed:
                    self.registry.mark_failure(eng, f"request failed, then {reason}", eject_now=True)
            finally:
                self._suspects.discard(eng)
        self._suspects.add(eng)
        task = asyncio.create_task(recheck())
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    def _choose(self, att: Attempt, role: str) -> Engine:
        eng = self.registry.pick(role, att.excluded(role))
        if eng is None:
            self._no_engine(att, role)
        att.used.append(eng.tag)
        return eng

    def _no_engine(self, att: Attempt, role: str) -> NoReturn:
        """`role` has no engine for this request: FallBack to the other role when --fallback allows, else 503."""
        other = None if att.fallback else self._fallback_for(role)
        if other is not None:
            raise FallBack(other)
        raise Failure(503, "no_healthy_engine", f"no healthy {role} engine (see GET /healthcheck)",
                      None, role, retriable=False)

    async def _send(self, eng: Engine, att: Attempt, body: bytes, buffered: bool) -> ClientResponse:
        """POST to an engine (buffered: the whole answer within one deadline), mapping failures to Failure."""
        timeout = self.settings.request_timeout
        pool = eng.pool
        payload = b"%s%sContent-Length: %d\r\n\r\n%s" % (pool.head("POST", att.path), att.extra, len(body), body)
        try:
            return await pool.send(payload, timeout, buffered)
        except BackendConnectError as exc:
            self.registry.mark_failure(eng, str(exc), eject_now=True)
            self.metrics.count(eng.role, eng.key, "connect_error")
            raise Failure(502, "backend_unreachable", str(exc), eng, eng.role, retriable=True) from exc
        except BackendIOError as exc:
            self.metrics.count(eng.role, eng.key, "io_error")
            self._suspect(eng)
            raise Failure(502, "backend_error", str(exc), eng, eng.role, retriable=True) from exc
        except TimeoutError as exc:
            self.metrics.count(eng.role, eng.key, "timeout")
            raise Failure(504, "timeout", f"{eng.role} engine {eng.key} did not answer within {timeout}s",
                          eng, eng.role, retriable=False) from exc

    async def _read_rest(self, eng: Engine, resp: StreamedResponse) -> bytes:
        """The body of a streamed (unbuffered) answer, read whole."""
        timeout = self.settings.request_timeout
        try:
            return await resp.read_all(timeout)
        except BackendIOError as exc:
            self.metrics.count(eng.role, eng.key, "io_error")
            self._suspect(eng)
            raise Failure(502, "backend_error", f"{eng.key}: {exc}", eng, eng.role, retriable=True) from exc
        except TimeoutError as exc:
            self.metrics.count(eng.role, eng.key, "timeout")
            raise Failure(504, "timeout", f"{eng.role} engine {eng.key} did not finish within {timeout}s",
                          eng, eng.role, retriable=False) from exc

    def _check_status(self, eng: Engine, resp: ClientResponse, data: bytes) -> None:
        if resp.status < 300:
            return
        outcome = "http_5xx" if resp.status >= 500 else "http_4xx"
        self.metrics.count(eng.role, eng.key, outcome)
        if resp.status < 500:
            raise Passthrough(resp.status, resp.headers.get("content-type", JSON), data)
        self._suspect(eng)
        raise Answered5xx(502, "backend_error", f"{eng.role} engine {eng.key} answered {resp.status}: "
                          f"{data[:200].decode(errors='replace')}", eng, eng.role, retriable=True)

    async def _prefill(self, att: Attempt) -> tuple[Engine, bytes | None]:
        """Run the prefill; returns its engine and the JSON text of its kv_transfer_params (None: none given)."""
        eng = self._choose(att, "prefill")
        eng.outstanding += 1
        try:
            resp = await self._send(eng, att, att.prefill_payload(), True)
        finally:
            eng.outstanding -= 1
        data = resp.body
        if resp.status >= 300:
            self._check_status(eng, resp, data)
        found = jsonfast.last_member(data, "kv_transfer_params")
        if found is not None:
            kv = None if found[0] is None else found[1]
        else:
            try:
                value = jsonfast.loads(data).get("kv_transfer_params")  # type: ignore[attr-defined]
            except (ValueError, AttributeError) as exc:
                self.metrics.count("prefill", eng.key, "bad_body")
                raise Failure(502, "backend_error", f"prefill engine {eng.key} answered a body that is not a JSON "
                              f"object: {data[:120]!r}", eng, "prefill", retriable=True) from exc
            kv = None if value is None else jsonfast.dumps(value)
        self.metrics.count("prefill", eng.key, "ok")
        return eng, kv

    async def _decode_buffered(self, att: Attempt, kv: bytes | None) -> tuple[int, str, bytes]:
        eng = self._choose(att, att.serve)
        eng.outstanding += 1
        try:
            resp = await self._send(eng, att, att.decode_payload(kv), True)
        finally:
            eng.outstanding -= 1
        data = resp.body
        if resp.status >= 300:
            self._check_status(eng, resp, data)
        self.metrics.count(eng.role, eng.key, "ok")
        return resp.status, resp.headers.get("content-type", JSON), data

    async def _decode_stream_open(self, att: Attempt, kv: bytes | None) -> tuple[Engine, StreamedResponse, bytes]:
        """Open the decode stream and wait for its first body bytes (still retriable until then)."""
        eng = self._choose(att, att.serve)
        eng.outstanding += 1
        try:
            resp = cast(StreamedResponse, await self._send(eng, att, att.decode_payload(kv), False))
            if resp.status >= 300:
                self._check_status(eng, resp, await self._read_rest(eng, resp))
            timeout = self.settings.request_timeout
            try:
                first = await resp.next_piece(timeout) or b""
            except BackendIOError as exc:
                self.metrics.count(eng.role, eng.key, "io_error")
                self._suspect(eng)
                raise Failure(502, "backend_error", f"{eng.key}: {exc}", eng, eng.role, retriable=True) from exc
            except TimeoutError as exc:
                self.metrics.count(eng.role, eng.key, "timeout")
                raise Failure(504, "timeout", f"{eng.role} engine {eng.key} sent nothing within {timeout}s",
                              eng, eng.role, retriable=False) from exc
        except BaseException:
            eng.outstanding -= 1
            raise
        return eng, resp, first

    async def _pump(self, att: Attempt, eng: Engine, resp: StreamedResponse, first: bytes,
                    conn: ServerConnection) -> bool:
        """Relay the decode stream; a backend failure ends it with an SSE error event."""
        ctype = resp.headers.get("content-type", "text/event-stream")
        timeout = self.settings.request_timeout
        try:
            head = response_head(200, {"Content-Type": ctype, "Transfer-Encoding": "chunked",
                                       "Cache-Control": "no-cache", "X-Request-Id": att.rid})
            conn.write(head + chunk(first) if first else head)
            await conn.drain()
            try:
                while (piece := await resp.next_piece(timeout)) is not None:
                    if conn.closed:
                        raise ConnectionResetError("client connection lost")
                    conn.write(chunk(piece))
                    await conn.drain()
            except (BackendIOError, TimeoutError) as exc:
                self._suspect(eng)
                self.metrics.stream_aborts += 1
                self.metrics.count(eng.role, eng.key, "stream_abort")
                log.error("%s engine %s failed mid-stream for %s: %s", eng.role, eng.key, att.path, exc)
                err = {"error": {"message": f"{eng.role} engine {eng.key} failed mid-stream: {exc}",
                                 "type": "backend_stream_aborted", "engine": eng.key, "role": eng.role}}
                conn.write(chunk(b"data: " + json.dumps(err).encode() + b"\n\n") + LAST_CHUNK)
                await conn.drain()
                return False
            conn.write(LAST_CHUNK)
            await conn.drain()
            self.metrics.count(eng.role, eng.key, "ok")
            return True
        except (ConnectionError, OSError):
            self.metrics.count(eng.role, eng.key, "client_disconnect")
            return False
        finally:
            eng.outstanding -= 1
            resp.abandon()
