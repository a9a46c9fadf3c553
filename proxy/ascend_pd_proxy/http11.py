"""Minimal HTTP/1.1 on asyncio streams: request parsing, response writing, pooled client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
READ_SIZE = 64 * 1024

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 we can handle."""


class BackendConnectError(Exception):
    """A TCP connection to the backend could not be opened."""


class BackendIOError(Exception):
    """The backend connection broke or answered malformed HTTP."""


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ProtocolError("connection closed inside the header block") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes") from exc
    return head


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


async def _read_chunked(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise ProtocolError(f"bad chunk size line {size_line[:40]!r}") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request (None on clean EOF); answers `Expect: 100-continue`."""
    head = await _read_head(reader)
    if head is None:
        return None
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError(f"malformed request line {lines[0][:80]!r}")
    req = Request(parts[0].upper(), parts[1], parts[2], _parse_headers(lines[1:]))
    if req.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in req.headers.get("transfer-encoding", "").lower():
        body = bytearray()
        async for piece in _read_chunked(reader):
            body += piece
            if len(body) > MAX_BODY_BYTES:
                raise ProtocolError(f"request body larger than {MAX_BODY_BYTES} bytes")
        req.body = bytes(body)
    elif "content-length" in req.headers:
        length = int(req.headers["content-length"])
        if length > MAX_BODY_BYTES:
            raise ProtocolError(f"request body larger than {MAX_BODY_BYTES} bytes")
        req.body = await reader.readexactly(length)
    return req


def response_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def full_response(status: int, content_type: str, body: bytes, keep_alive: bool,
                  extra: dict[str, str] | None = None) -> bytes:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    if extra:
        headers.update(extra)
    if not keep_alive:
        headers["Connection"] = "close"
    return response_head(status, headers) + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class ClientResponse:
    """A backend response whose body is read with `read_all` or `iter_body`."""

    status: int
    headers: dict[str, str]
    conn: "Connection"
    pool: "ConnectionPool"
    _done: bool = False
    _body: bytes | None = None

    async def prefetch(self) -> None:
        """Read a Content-Length body now (inside the caller's deadline); read_all then returns it."""
        length = self.headers.get("content-length")
        if length is None or "chunked" in self.headers.get("transfer-encoding", "").lower():
            return
        try:
            self._body = await self.conn.reader.readexactly(int(length))
        except asyncio.IncompleteReadError as exc:
            self.conn.close()
            raise BackendIOError(f"body truncated: got {len(exc.partial)} of {length} bytes") from exc
        except (ConnectionError, OSError) as exc:
            self.conn.close()
            raise BackendIOError(f"connection broke while reading body: {exc!r}") from exc
        self._finish(True)

    async def iter_body(self, idle_timeout: float) -> AsyncIterator[bytes]:
        """Yield body pieces; each wait for the backend is bounded by idle_timeout."""
        reader = self.conn.reader
        te = self.headers.get("transfer-encoding", "").lower()
        try:
            if "chunked" in te:
                it = _read_chunked(reader).__aiter__()
                while True:
                    try:
                        async with asyncio.timeout(idle_timeout):
                            data = await it.__anext__()
                    except StopAsyncIteration:
                        break
                    yield data
                reusable = True
            elif "content-length" in self.headers:
                left = int(self.headers["content-length"])
                while left > 0:
                    async with asyncio.timeout(idle_timeout):
                        data = await reader.read(min(left, READ_SIZE))
                    if not data:
                        raise BackendIOError(f"body truncated, {left} bytes missing")
                    left -= len(data)
                    yield data
                reusable = True
            else:
                while True:
                    async with asyncio.timeout(idle_timeout):
                        data = await reader.read(READ_SIZE)
                    if not data:
                        break
                    yield data
                reusable = False
        except TimeoutError:
            self.conn.close()
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.LimitOverrunError) as exc:
            self.conn.close()
            raise BackendIOError(f"connection broke while reading body: {exc!r}") from exc
        except BaseException:
            self.conn.close()
            raise
        self._finish(reusable)

    def _finish(self, reusable: bool) -> None:
        self._done = True
        if reusable and self.headers.get("connection", "").lower() != "close":
            self.pool.release(self.conn)
        else:
            self.conn.close()

    async def read_all(self, timeout: float) -> bytes:
        """The whole body within timeout (fast path for Content-Length bodies)."""
        if self._body is not None:
            return self._body
        length = self.headers.get("content-length")
        if length is None or "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = bytearray()
            async with asyncio.timeout(timeout):
                async for piece in self.iter_body(timeout):
                    body += piece
            return bytes(body)
        try:
            async with asyncio.timeout(timeout):
                data = await self.conn.reader.readexactly(int(length))
        except TimeoutError:
            self.conn.close()
            raise
        except asyncio.IncompleteReadError as exc:
            self.conn.close()
            raise BackendIOError(f"body truncated: got {len(exc.partial)} of {length} bytes") from exc
        except (ConnectionError, OSError) as exc:
            self.conn.close()
            raise BackendIOError(f"connection broke while reading body: {exc!r}") from exc
        self._finish(True)
        return data

    def abandon(self) -> None:
        if not self._done:
            self.conn.close()


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


@dataclass
class ConnectionPool:
    """Keep-alive connections to one backend."""

    host: str
    port: int
    max_idle: int = 64
    idle: list[Connection] = field(default_factory=list)

    async def _open(self, timeout: float) -> Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise BackendConnectError(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc
        return Connection(reader, writer)

    def release(self, conn: Connection) -> None:
        if len(self.idle) < self.max_idle and not conn.writer.is_closing():
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      timeout: float, buffered: bool = False) -> ClientResponse:
        """Send a request; a reused connection that dies before answering is retried once fresh.

        buffered: also read a Content-Length body within the same deadline (one timer per exchange).
        """
        host_hdr = f"[{self.host}]" if ":" in self.host else self.host
        head = [f"{method} {path} HTTP/1.1", f"Host: {host_hdr}:{self.port}",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        while self.idle:
            conn = self.idle.pop()
            try:
                return await self._exchange(conn, payload, timeout, buffered)
            except _StaleConnection:
                continue
        conn = await self._open(timeout)
        try:
            return await self._exchange(conn, payload, timeout, buffered)
        except _StaleConnection as exc:
            raise BackendIOError(f"{self.host}:{self.port} closed the connection without answering") from exc

    async def _exchange(self, conn: Connection, payload: bytes, timeout: float, buffered: bool) -> ClientResponse:
        try:
            async with asyncio.timeout(timeout):
                conn.writer.write(payload)
                await conn.writer.drain()
                head = await _read_head(conn.reader)
                if head is None:
                    raise _StaleConnection()
                resp = self._response(conn, head)
                if buffered:
                    await resp.prefetch()
        except TimeoutError:
            conn.close()
            raise
        except (ConnectionError, OSError) as exc:
            conn.close()
            raise _StaleConnection() from exc
        except ProtocolError as exc:
            conn.close()
            raise BackendIOError(f"{self.host}:{self.port}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return resp

    def _response(self, conn: Connection, head: bytes) -> ClientResponse:
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        try:
            status = int(parts[1])
            headers = _parse_headers(lines[1:])
        except (IndexError, ValueError, ProtocolError) as exc:
            raise BackendIOError(f"{self.host}:{self.port} sent bad status line {lines[0][:80]!r}") from exc
        return ClientResponse(status, headers, conn, self)


class _StaleConnection(Exception):
    """The connection closed before any response byte arrived."""
