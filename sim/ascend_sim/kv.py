"""Mooncake-style KV side channel: handshake listeners (producer and consumer) and the consumer's dial.

Wire protocol: one JSON line each way.
  dialer   -> listener {"op": "kv_handshake", "request_id": id, "engine_id": dialer engine}
  listener -> dialer   {"ok": true, "engine_id": listener engine, "port": listener port}
"""

from __future__ import annotations

import asyncio
import errno
import json
from typing import Any

from ascend_sim.log import log

WHERE = "mooncake_connector.py"


class KVError(Exception):
    """A KV handshake or listener failure."""


async def start_listeners(host: str, ports: list[int], engine_id: str) -> list[asyncio.base_events.Server]:
    """Bind every handshake port; Address already in use is fatal, as with ZMQ in vLLM."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg = json.loads(await asyncio.wait_for(reader.readline(), 5) or b"{}")
            port = writer.get_extra_info("sockname")[1]
            log("INFO", WHERE, f"KV handshake from {msg.get('engine_id')} for request {msg.get('request_id')} "
                f"on port {port}")
            writer.write((json.dumps({"ok": True, "engine_id": engine_id, "port": port}) + "\n").encode())
            await writer.drain()
        except (asyncio.TimeoutError, json.JSONDecodeError, ConnectionError):
            pass
        finally:
            writer.close()

    servers = []
    for port in ports:
        try:
            servers.append(await asyncio.start_server(answer, host, port, reuse_address=True))
        except OSError as err:
            for server in servers:
                server.close()
            reason = "Address already in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            raise KVError(f"zmq.error.ZMQError: {reason} (addr='tcp://{host}:{port}')") from None
    log("INFO", WHERE, f"KV handshake listeners for engine {engine_id} on {host} ports {ports}")
    return servers


async def handshake(host: str, port: int, request_id: str, engine_id: str, expect_engine: Any,
                    timeout: float) -> None:
    """Dial the producer's side channel; raise KVError naming host:port on any failure."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as err:
        detail = "timed out" if isinstance(err, asyncio.TimeoutError) else (err.strerror or str(err))
        raise KVError(f"KV handshake with {host}:{port} failed: {detail} after at most {timeout:g}s") from None
    try:
        writer.write((json.dumps({"op": "kv_handshake", "request_id": request_id, "engine_id": engine_id})
                      + "\n").encode())
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), timeout) or b"{}")
    except (OSError, asyncio.TimeoutError, json.JSONDecodeError) as err:
        raise KVError(f"KV handshake with {host}:{port} failed: no valid reply ({err!r})") from None
    finally:
        writer.close()
    if not reply.get("ok"):
        raise KVError(f"KV handshake with {host}:{port} failed: peer refused ({reply})")
    if expect_engine is not None and str(reply.get("engine_id")) != str(expect_engine):
        raise KVError(f"KV handshake with {host}:{port} reached engine {reply.get('engine_id')}, "
                      f"expected remote_engine_id {expect_engine}")
    log("INFO", WHERE, f"KV handshake with {host}:{port} engine {reply.get('engine_id')} ok")
