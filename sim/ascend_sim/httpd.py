"""Minimal asyncio HTTP/1.1 server: keep-alive, Content-Length and chunked bodies, SSE streaming."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

from ascend_sim.log import access

MAX_BODY = 64 * 1024 * 1024


class HTTPError(Exception):
    """An error answered as OpenAI-style JSON."""

    def __init__(self, status: int, message: str, err_type: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status, self.message, self.err_type = status, message, err_type

    def response(self) -> "Response":
        """The JSON error response."""
        body = {"error": {"message": self.message, "type": self.err_type, "param": None, "code": self.status}}
        return json_response(body, self.status)


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as a JSON object, or a 400 error."""
        try:
            data = json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HTTPError(400, f"Invalid JSON body: {err}") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "Request body must be a JSON object")
        return data


@dataclass
class Response:
    """A complete body, or a stream of server-sent-event payloads."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200) -> Response:
    """Serialize data as a JSON response."""
    return Response(status, json.dumps(data).encode())


Handler = Callable[[Request], Awaitable[Response]]


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()
    length = int(headers.get("content-length", "0") or "0")
    if length > MAX_BODY:
        raise HTTPError(413, f"Request body of {length} bytes exceeds {MAX_BODY}")
    return await reader.readexactly(length) if length else b""


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, _version = line.decode("latin-1").split()
    except ValueError:
        raise HTTPError(400, f"Malformed request line {line[:100]!r}") from None
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _sep, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await _read_body(reader, headers)
    return Request(method.upper(), urlsplit(target).path, target, headers, body)


def _head(status: int, extra: dict[str, str]) -> bytes:
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}", "server: ascend-sim"] + [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write(writer: asyncio.StreamWriter, resp: Response, keep_alive: bool) -> None:
    conn = {"connection": "keep-alive" if keep_alive else "close"}
    if resp.stream is None:
        headers = {"content-type": resp.content_type, "content-length": str(len(resp.body)), **conn, **resp.headers}
        writer.write(_head(resp.status, headers) + resp.body)
        await writer.drain()
        return
    headers = {"content-type": "text/event-stream; charset=utf-8", "transfer-encoding": "chunked",
               "cache-control": "no-cache", **conn, **resp.headers}
    writer.write(_head(resp.status, headers))
    async for chunk in resp.stream:
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def handle_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    """Serve requests on one connection until the client closes or asks to."""
    peer = writer.get_extra_info("peername") or ("-", 0)
    client = f"{peer[0]}:{peer[1]}"
    try:
        while True:
            try:
                req = await _read_request(reader)
            except HTTPError as err:
                await _write(writer, err.response(), False)
                return
            if req is None:
                return
            try:
                resp = await handler(req)
            except HTTPError as err:
                resp = err.response()
            keep_alive = req.headers.get("connection", "").lower() != "close"
            access(client, req.method, req.target, resp.status, HTTPStatus(resp.status).phrase)
            await _write(writer, resp, keep_alive)
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()
