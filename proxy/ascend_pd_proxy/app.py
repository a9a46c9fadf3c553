"""The PD proxy: routes each completion through a prefill engine then a decode engine, with failover."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .engines import ROLES, Engine, Registry, health_loop, parse_instance, probe
from .http11 import (LAST_CHUNK, BackendConnectError, BackendIOError, ClientResponse, ProtocolError, Request,
                     chunk, full_response, read_request, response_head)
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


class AccessLog:
    """One line per client request, straight to stderr in the layout of the other log lines.

    logging's record machinery (record, caller lookup, asctime) cost about a tenth of the proxy's CPU per
    request; this writes the same line with one cached timestamp per second. Off below INFO.
    """

    def __init__(self) -> None:
        self.enabled = log.isEnabledFor(logging.INFO)
        self._sec = -1
        self._stamp = ""

    def write(self, method: str, path: str, status: int, engines: list[str], retries: int, seconds: float) -> None:
        if not self.enabled:
            return
        now = time.time()
        sec = int(now)
        if sec != self._sec:
            self._sec, self._stamp = sec, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
        sys.stderr.write(f"{self._stamp},{int((now - sec) * 1000):03d} INFO ascend_pd_proxy {method} {path} "
                         f"status={status or 'aborted'} engines={','.join(engines) or '-'} retries={retries} "
                         f"duration_ms={seconds * 1000:.1f}\n")


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


class Passthrough(Exception):
    """A backend answered a client error (4xx): hand it to the client unchanged."""

    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        super().__init__(status)
        self.status, self.content_type, self.body = status, content_type, body


@dataclass
class Attempt:
    """Book-keeping for one client completion request."""

    path: str
    body: dict
    headers: dict[str, str]
    used: list[str] = field(default_factory=list)
    retries: int = 0
    tried: dict[str, set[Engine]] = field(default_factory=lambda: {r: set() for r in ROLES})


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


class Proxy:
    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = Metrics()
        self.access = AccessLog()
        self._health_task: asyncio.Task | None = None
        self._rechecks: set[asyncio.Task] = set()
        self._suspects: set[Engine] = set()

    # ---- connection handling -------------------------------------------------------------
    async def serve(self, host: str, port: int) -> asyncio.Server:
        self._health_task = asyncio.create_task(
            health_loop(self.registry, self.settings.health_interval, self.settings.health_timeout))
        return await asyncio.start_server(self._connection, host, port, limit=64 * 1024, backlog=1024)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    req = await read_request(reader, writer)
                except (ProtocolError, ValueError, asyncio.IncompleteReadError) as exc:
                    status, body = error_json(400, "bad_request", f"malformed HTTP request: {exc}")
                    writer.write(full_response(status, JSON, body, False))
                    break
                if req is None or not await self._dispatch(req, writer) or not req.keep_alive:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        path, method = req.path, req.method
        if method == "POST" and path in COMPLETION_PATHS:
            return await self._completion(req, writer)
        routes = {("GET", "/healthcheck"): self._healthcheck, ("GET", "/health"): self._healthcheck,
                  ("GET", "/metrics"): self._metrics_page, ("GET", "/v1/models"): self._models,
                  ("POST", "/instances/add"): self._admin, ("POST", "/instances/remove"): self._admin,
                  ("POST", "/instances/drain"): self._admin, ("POST", "/instances/undrain"): self._admin}
        handler = routes.get((method, path))
        if handler is None:
            status, body = error_json(404, "not_found", f"no route for {method} {path}")
            ctype = JSON
        else:
            status, ctype, body = await handler(req)
        writer.write(full_response(status, ctype, body, req.keep_alive))
        await writer.drain()
        return True

    # ---- admin and observability ---------------------------------------------------------
    def _snapshot(self) -> dict[str, object]:
        state: dict[str, object] = {r: [e.state() for e in self.registry.engines[r]] for r in ROLES}
        state["status"] = "ok" if all(self.registry.healthy(r) for r in ROLES) else "unavailable"
        for role in ROLES:
            state[f"{role}_instances"] = len(self.registry.engines[role])
        return state

    async def _healthcheck(self, _req: Request) -> tuple[int, str, bytes]:
        snap = self._snapshot()
        return (200 if snap["status"] == "ok" else 503), JSON, json.dumps(snap).encode()

    async def _metrics_page(self, _req: Request) -> tuple[int, str, bytes]:
        return 200, "text/plain; version=0.0.4", self.metrics.render(self.registry)

    async def _models(self, req: Request) -> tuple[int, str, bytes]:
        tried: set[Engine] = set()
        while (eng := self.registry.pick("decode", tried)) is not None:
            tried.add(eng)
            try:
                resp = await eng.pool.request("GET", "/v1/models", self._auth(req.headers), b"",
                                              self.settings.health_timeout * 5)
                data = await resp.read_all(self.settings.health_timeout * 5)
            except BackendConnectError as exc:
                self.registry.mark_failure(eng, str(exc), eject_now=True)
                continue
            except (BackendIOError, TimeoutError):
                continue
            return resp.status, resp.headers.get("content-type", JSON), data
        status, body = error_json(503, "no_healthy_engine", "no healthy decode engine answered GET /v1/models")
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
    @staticmethod
    def _auth(headers: dict[str, str]) -> dict[str, str]:
        if "authorization" in headers:
            return {"Authorization": headers["authorization"]}
        key = os.environ.get("OPENAI_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _completion(self, req: Request, writer: asyncio.StreamWriter) -> bool:
        start = time.monotonic()
        rid = req.headers.get("x-request-id") or uuid.uuid4().hex
        headers = {"Content-Type": JSON, "X-Request-Id": rid, **self._auth(req.headers)}
        att = Attempt(req.path, {}, headers)
        keep, status = True, 0
        try:
            try:
                att.body = json.loads(req.body)
                if not isinstance(att.body, dict):
                    raise ValueError("the JSON body must be an object")
            except ValueError as exc:
                status, data = error_json(400, "bad_request", f"request body is not valid JSON: {exc}")
                writer.write(full_response(status, JSON, data, req.keep_alive))
            else:
                if att.body.get("stream"):
                    status, keep = await self._run_stream(att, writer, req.keep_alive)
                else:
                    status, ctype, data = await self._run_buffered(att)
                    writer.write(full_response(status, ctype, data, req.keep_alive, {"X-Request-Id": rid}))
            await writer.drain()
        finally:
            dur = time.monotonic() - start
            self.metrics.observe(dur)
            self.access.write(req.method, req.path, status, att.used, att.retries, dur)
        return keep

    async def _run_buffered(self, att: Attempt) -> tuple[int, str, bytes]:
        try:
            return await self._with_failover(att, self._decode_buffered)
        except Failure as f:
            return f.status, JSON, f.body()
        except Passthrough as p:
            return p.status, p.content_type, p.body

    async def _run_stream(self, att: Attempt, writer: asyncio.StreamWriter, keep_alive: bool) -> tuple[int, bool]:
        try:
            eng, resp, first, rest = await self._with_failover(att, self._decode_stream_open)
        except Failure as f:
            writer.write(full_response(f.status, JSON, f.body(), keep_alive))
            await writer.drain()
            return f.status, True
        except Passthrough as p:
            writer.write(full_response(p.status, p.content_type, p.body, keep_alive))
            await writer.drain()
            return p.status, True
        return 200, await self._pump(att, eng, resp, first, rest, writer)

    async def _with_failover(self, att: Attempt, decode):
        """Prefill then decode; retriable failures move to another engine within --max-retries."""
        kv: dict | None = None
        p_eng: Engine | None = None
        last: Failure | None = None
        while True:
            try:
                if kv is None or p_eng is None or not p_eng.up:
                    p_eng, kv = await self._prefill(att)
                return await decode(att, kv)
            except Failure as f:
                last = f
                if not f.retriable or att.retries >= self.settings.max_retries:
                    raise
                if f.eng is not None:
                    att.tried[f.role].add(f.eng)
                if self.registry.pick(f.role, att.tried[f.role]) is None:
                    raise
                att.retries += 1
                self.metrics.retries += 1
                log.warning("retrying %s on another %s engine after %s", att.path, f.role, last)

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
        eng = self.registry.pick(role, att.tried[role])
        if eng is None:
            raise Failure(503, "no_healthy_engine", f"no healthy {role} engine (see GET /healthcheck)",
                          None, role, retriable=False)
        att.used.append(f"{role[0]}:{eng.key}")
        return eng

    async def _send(self, eng: Engine, att: Attempt, payload: dict, stream: bool = False) -> ClientResponse:
        """POST to an engine, mapping transport failures to Failure."""
        timeout = self.settings.request_timeout
        try:
            return await eng.pool.request("POST", att.path, att.headers, json.dumps(payload).encode(), timeout,
                                          buffered=not stream)
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

    async def _read(self, eng: Engine, resp: ClientResponse) -> bytes:
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
        raise Failure(502, "backend_error", f"{eng.role} engine {eng.key} answered {resp.status}: "
                      f"{data[:200].decode(errors='replace')}", eng, eng.role, retriable=True)

    async def _prefill(self, att: Attempt) -> tuple[Engine, dict | None]:
        eng = self._choose(att, "prefill")
        eng.outstanding += 1
        try:
            resp = await self._send(eng, att, prefill_body(att.body))
            data = await self._read(eng, resp)
        finally:
            eng.outstanding -= 1
        self._check_status(eng, resp, data)
        try:
            kv = json.loads(data).get("kv_transfer_params")
        except (ValueError, AttributeError) as exc:
            self.metrics.count("prefill", eng.key, "bad_body")
            raise Failure(502, "backend_error", f"prefill engine {eng.key} answered a body that is not a JSON "
                          f"object: {data[:120]!r}", eng, "prefill", retriable=True) from exc
        self.metrics.count("prefill", eng.key, "ok")
        return eng, kv

    def _decode_payload(self, att: Attempt, kv: dict | None) -> dict:
        if kv is None:
            return att.body
        return {**att.body, "kv_transfer_params": kv}

    async def _decode_buffered(self, att: Attempt, kv: dict | None) -> tuple[int, str, bytes]:
        eng = self._choose(att, "decode")
        eng.outstanding += 1
        try:
            resp = await self._send(eng, att, self._decode_payload(att, kv))
            data = await self._read(eng, resp)
        finally:
            eng.outstanding -= 1
        self._check_status(eng, resp, data)
        self.metrics.count("decode", eng.key, "ok")
        return resp.status, resp.headers.get("content-type", JSON), data

    async def _decode_stream_open(self, att: Attempt, kv: dict | None):
        """Open the decode stream and wait for its first body bytes (still retriable until then)."""
        eng = self._choose(att, "decode")
        eng.outstanding += 1
        try:
            resp = await self._send(eng, att, self._decode_payload(att, kv), stream=True)
            if resp.status >= 300:
                self._check_status(eng, resp, await self._read(eng, resp))
            rest = resp.iter_body(self.settings.request_timeout)
            try:
                first = await rest.__anext__()
            except StopAsyncIteration:
                first = b""
            except BackendIOError as exc:
                self.metrics.count("decode", eng.key, "io_error")
                self._suspect(eng)
                raise Failure(502, "backend_error", f"{eng.key}: {exc}", eng, "decode", retriable=True) from exc
            except TimeoutError as exc:
                self.metrics.count("decode", eng.key, "timeout")
                raise Failure(504, "timeout", f"decode engine {eng.key} sent nothing within "
                              f"{self.settings.request_timeout}s", eng, "decode", retriable=False) from exc
        except BaseException:
            eng.outstanding -= 1
            raise
        return eng, resp, first, rest

    async def _pump(self, att: Attempt, eng: Engine, resp: ClientResponse, first: bytes,
                    rest: AsyncIterator[bytes], writer: asyncio.StreamWriter) -> bool:
        """Relay the decode stream; a backend failure ends it with an SSE error event."""
        ctype = resp.headers.get("content-type", "text/event-stream")
        try:
            writer.write(response_head(200, {"Content-Type": ctype, "Transfer-Encoding": "chunked",
                                             "Cache-Control": "no-cache",
                                             "X-Request-Id": att.headers["X-Request-Id"]}))
            if first:
                writer.write(chunk(first))
            await writer.drain()
            try:
                async for piece in rest:
                    writer.write(chunk(piece))
                    await writer.drain()
            except (BackendIOError, TimeoutError) as exc:
                self._suspect(eng)
                self.metrics.stream_aborts += 1
                self.metrics.count("decode", eng.key, "stream_abort")
                log.error("decode engine %s failed mid-stream for %s: %s", eng.key, att.path, exc)
                err = {"error": {"message": f"decode engine {eng.key} failed mid-stream: {exc}",
                                 "type": "backend_stream_aborted", "engine": eng.key, "role": "decode"}}
                writer.write(chunk(b"data: " + json.dumps(err).encode() + b"\n\n") + LAST_CHUNK)
                await writer.drain()
                return False
            writer.write(LAST_CHUNK)
            await writer.drain()
            self.metrics.count("decode", eng.key, "ok")
            return True
        except (ConnectionError, OSError):
            self.metrics.count("decode", eng.key, "client_disconnect")
            resp.abandon()
            return False
        finally:
            eng.outstanding -= 1
            await rest.aclose()  # type: ignore[attr-defined]
