"""Minimal HTTP/1.1 on asyncio protocols: a server connection and pooled backend connections.

Protocols instead of streams: each message is parsed from the bytes as they arrive and the waiting coroutine is
woken once per message (not once per header block, body and timeout context), each backend exchange has one
timer, and a request or response head plus its body goes out in one write.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("ascend_pd_proxy")
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
# a streamed backend body beyond this many unsent bytes pauses reading from that backend
STREAM_HIGH_WATER = 1024 * 1024
# a client that pipelines this much while its previous request is served is paused
PIPELINE_HIGH_WATER = 1024 * 1024

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 we can handle."""


class BackendConnectError(Exception):
    """A TCP connection to the backend could not be opened."""


class BackendIOError(Exception):
    """The backend connection broke or answered malformed HTTP."""


class StaleConnection(Exception):
    """The connection closed before any response byte arrived."""


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The start line and the headers (names lower-cased) of a head without its final blank line."""
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class ChunkedDecoder:
    """Incremental Transfer-Encoding: chunked decoder.

    feed(buf) consumes what it can from the front of buf (deleting it) and returns the decoded pieces;
    `done` is set after the last chunk and its trailers.
    """

    __slots__ = ("left", "done", "_trailers")

    def __init__(self) -> None:
        self.left = -1  # bytes of chunk data (+ CRLF) still to read; -1 while reading a size line
        self.done = False
        self._trailers = False

    def feed(self, buf: bytearray) -> list[bytes]:
        pieces: list[bytes] = []
        while buf and not self.done:
            if self._trailers:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._check_line(buf)
                    break
                del buf[:end + 2]
                if end == 0:
                    self.done = True
                continue
            if self.left < 0:
                end = buf.find(b"\r\n")
                if end < 0:
                    self._check_line(buf)
                    break
                line = bytes(buf[:end])
                del buf[:end + 2]
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}") from exc
                if size < 0:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}")
                if size == 0:
                    self._trailers = True
                    continue
                self.left = size + 2
            take = min(self.left, len(buf))
            data = bytes(buf[:take])
            del buf[:take]
            self.left -= take
            if self.left < 2:  # some of the CRLF that closes the chunk is in data
                data = data[:len(data) - (2 - self.left)]
            if self.left == 0:
                self.left = -1
            if data:
                pieces.append(data)
        return pieces

    @staticmethod
    def _check_line(buf: bytearray) -> None:
        if len(buf) > MAX_HEADER_BYTES:
            raise ProtocolError("chunk size or trailer line too long")


# ---- server side --------------------------------------------------------------------------------------------------

class Request:
    __slots__ = ("method", "target", "version", "headers", "body", "path", "keep_alive")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.path = target.split("?", 1)[0]
        conn = headers.get("connection", "").lower()
        self.keep_alive = conn == "keep-alive" if version == "HTTP/1.0" else conn != "close"


def parse_request_head(head: bytes) -> Request:
    start, headers = _parse_head(head)
    parts = start.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProtocolError(f"malformed request line {start[:80]!r}")
    return Request(parts[0].upper(), parts[1], parts[2], headers)


def response_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def full_response(status: int, content_type: str, body: bytes, keep_alive: bool,
                  extra: bytes = b"") -> bytes:
    """Status line, headers and body as one bytes object; extra is pre-formatted header lines."""
    status_line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode()
    return b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n%s" % (
        status_line, content_type.encode("latin-1"), len(body), extra,
        b"" if keep_alive else b"Connection: close\r\n", body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

Handler = Callable[[Request, "ServerConnection"], Awaitable[bool]]
BadRequest = Callable[[str], bytes]


class ServerConnection(asyncio.Protocol):
    """One client connection: parses requests and runs `handler(req, conn)` for each, one at a time.

    The handler answers with conn.write() (and `await conn.drain()` for long answers) and returns False when the
    connection must close. A request that cannot be parsed gets `bad_request(reason)` and the connection closes.
    """

    def __init__(self, handler: Handler, bad_request: BadRequest) -> None:
        self._handler = handler
        self._bad_request = bad_request
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._req: Request | None = None  # head parsed, body incomplete
        self._need = 0  # Content-Length body bytes
        self._chunked: ChunkedDecoder | None = None
        self._body = bytearray()
        self._busy = False
        self._paused = False
        self._eof = False
        self.closed = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._next: asyncio.Future | None = None  # the serving task waits here for the next request

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # asyncio.get_running_loop() costs a getpid() system call: look the loop up once per connection
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            req = self._parse()
            if req is not None:
                self._dispatch(req)
        elif len(self._buf) > PIPELINE_HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self._eof = True
        if not self._busy:
            self._stop_waiting()
        return self._busy  # keep a half-closed connection open until its answer is written

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("client connection lost"))
        self._stop_waiting()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by handlers
    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("client connection lost")
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    # -- parsing and serving
    def _parse(self) -> Request | None:
        """The next complete request, or None; a malformed one is answered 400 and the connection closed."""
        try:
            req = self._next_request()
        except (ProtocolError, ValueError) as exc:
            self.write(self._bad_request(f"malformed HTTP request: {exc}"))
            self._close()
            return None
        if req is None and self._eof:
            self._close()
        return req

    def _dispatch(self, req: Request) -> None:
        """Hand a request to the connection's serving task (started by the first request)."""
        self._busy = True
        waiter = self._next
        if waiter is not None:
            self._next = None
            waiter.set_result(req)
        else:
            self._loop.create_task(self._serve(req))  # type: ignore[union-attr]

    def _stop_waiting(self) -> None:
        waiter, self._next = self._next, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _next_request(self) -> Request | None:
        buf = self._buf
        req = self._req
        if req is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise ProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes")
                return None
            if end > MAX_HEADER_BYTES:
                raise ProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes")
            req = parse_request_head(bytes(buf[:end]))
            del buf[:end + 4]
            headers = req.headers
            if headers.get("expect", "").lower() == "100-continue":
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked = ChunkedDecoder()
            elif "content-length" in headers:
                self._need = int(headers["content-length"])
                if self._need < 0:
                    raise ProtocolError(f"bad Content-Length {self._need}")
                if self._need > MAX_BODY_BYTES:
                    raise ProtocolError(f"request body larger than {MAX_BODY_BYTES} bytes")
            else:
                return req
            self._req = req
        if self._chunked is not None:
            for piece in self._chunked.feed(buf):
                self._body += piece
            if len(self._body) > MAX_BODY_BYTES:
                raise ProtocolError(f"request body larger than {MAX_BODY_BYTES} bytes")
            if not self._chunked.done:
                return None
            req.body = bytes(self._body)
            self._body = bytearray()
            self._chunked = None
        else:
            need = self._need
            if len(buf) < need:
                return None
            req.body = bytes(buf[:need])
            del buf[:need]
        self._req = None
        return req

    async def _serve(self, req: Request | None) -> None:
        """Answer the connection's requests one after the other (one task per connection, not per request)."""
        while req is not None:
            keep = False
            try:
                keep = await self._handler(req, self)
            except (ConnectionError, OSError):
                pass
            except Exception:  # pylint: disable=broad-exception-caught  # a bug must not kill the server
                log.exception("error while answering %s %s", req.method, req.path)
            self._busy = False
            if not keep or not req.keep_alive or self.closed:
                self._close()
                return
            if self._paused:
                self._paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
            req = self._parse() if self._buf or self._eof else None
            if req is not None:
                self._busy = True
            elif self.closed or self._eof:
                return
            else:
                self._next = self._loop.create_future()  # type: ignore[union-attr]
                req = await self._next

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


# ---- client side --------------------------------------------------------------------------------------------------

_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)


class ClientResponse:
    """A backend answer read whole (buffered): status, headers and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers
        self.body = b""


class StreamedResponse(ClientResponse):
    """A backend answer whose body comes as pieces from `next_piece()` until it returns None."""

    __slots__ = ("_conn", "_pieces", "_queued", "_ended", "_error", "_waiter", "_wait_start", "_last_data", "_idle",
                 "_timer", "_loop")

    def __init__(self, status: int, headers: dict[str, str], conn: BackendConnection) -> None:
        super().__init__(status, headers)
        self._conn: BackendConnection | None = conn
        self._pieces: deque[bytes] = deque()
        self._queued = 0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._wait_start = 0.0
        self._last_data = 0.0
        self._idle = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop = conn.loop

    # -- fed by the connection
    def _push(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._queued += len(piece)
        self._last_data = self._loop.time()
        if self._queued > STREAM_HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        self._conn = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _check_idle(self) -> None:
        """One timer per stream: it fires only if the consumer has waited idle_timeout for a piece."""
        self._timer = None
        if self._ended:
            return
        now = self._loop.time()
        since = max(self._last_data, self._wait_start)
        if self._waiter is not None and now - since >= self._idle:
            waiter, self._waiter = self._waiter, None
            conn = self._conn
            self._end(TimeoutError())
            if conn is not None:
                conn.abort_exchange()
            if not waiter.done():
                waiter.set_result(None)
            return
        self._timer = self._loop.call_at((since if self._waiter is not None else now) + self._idle, self._check_idle)

    # -- consumer side
    async def next_piece(self, idle_timeout: float) -> bytes | None:
        """The next body piece (all that is queued, joined), or None at the end of a complete body.

        Raises BackendIOError when the backend broke the body, TimeoutError after idle_timeout without data.
        """
        if not self._pieces and not self._ended:
            self._idle = idle_timeout
            self._wait_start = self._loop.time()
            if self._timer is None:
                self._timer = self._loop.call_at(self._wait_start + idle_timeout, self._check_idle)
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            except BaseException:
                self.abandon()
                raise
        if self._pieces:
            if len(self._pieces) == 1:
                data = self._pieces.popleft()
            else:
                data = b"".join(self._pieces)
                self._pieces.clear()
            self._queued = 0
            if self._conn is not None:
                self._conn.resume()
            return data
        if self._error is not None:
            raise self._error
        return None

    async def read_all(self, idle_timeout: float) -> bytes:
        """The rest of a streamed body (waits between pieces are bounded by idle_timeout)."""
        if self._ended and not self._pieces:
            if self._error is not None:
                raise self._error
            return self.body
        out = bytearray()
        while (piece := await self.next_piece(idle_timeout)) is not None:
            out += piece
            if len(out) > MAX_BODY_BYTES:
                self.abandon()
                raise BackendIOError(f"body larger than {MAX_BODY_BYTES} bytes")
        self.body = bytes(out)
        return self.body

    def abandon(self) -> None:
        """Stop reading: the connection is closed unless the body was complete."""
        conn = self._conn
        if conn is not None:
            self._end(None)
            conn.abort_exchange()
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None


class BackendConnection(asyncio.Protocol):
    """One keep-alive connection to a backend; one exchange at a time."""

    def __init__(self, pool: ConnectionPool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._state = _DONE
        self._buffered = False
        self._got_bytes = False
        self._left = 0
        self._chunked: ChunkedDecoder | None = None
        self._body = bytearray()
        self._waiter: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._resp: ClientResponse | StreamedResponse | None = None
        self._keep = True
        self._paused = False

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        state = self._state
        if state == _DONE:
            return
        if state == _UNTIL_CLOSE:
            if self._buffered:
                self._resp.body = bytes(self._body)  # type: ignore[union-attr]
            self._finish(False)
            return
        if state == _HEAD:
            if not self._got_bytes:
                self._fail(StaleConnection())
            else:
                self._fail(BackendIOError(f"{self.pool.key}: connection closed inside the header block"))
            return
        what = f"{self._left} bytes missing" if state == _LENGTH else "chunked body unfinished"
        self._fail(BackendIOError(f"{self.pool.key}: connection broke while reading body ({what}): {exc!r}"))

    def eof_received(self) -> bool:
        return False

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _DONE:  # bytes nobody asked for: this connection cannot be reused
            self._close()
            return
        self._got_bytes = True
        if not self._buf:
            # fast paths for Content-Length answers: a whole head (with all or none of the body), or a body part
            if state == _HEAD and self._buffered:
                rest = self._fast_head(data)
                if rest is None:
                    return
                data = rest
            elif state == _LENGTH:
                if not self._buffered:
                    self._length_piece(data)
                    return
                if len(data) <= self._left:
                    self._body += data
                    self._left -= len(data)
                    if not self._left:
                        self._resp.body = bytes(self._body)  # type: ignore[union-attr]
                        self._finish(True)
                    return
        self._buf += data
        try:
            self._advance()
        except ProtocolError as exc:
            self._fail(BackendIOError(f"{self.pool.key}: {exc}"))
            self._close()

    def _fast_head(self, data: bytes) -> bytes | None:
        """A buffered answer's head found whole in data: parse it and take the body; the bytes left for the
        general parser, or None when data is used up."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return data
        try:
            self._head(data[:end])
        except ProtocolError as exc:
            self._fail(BackendIOError(f"{self.pool.key}: {exc}"))
            self._close()
            return None
        start = end + 4
        if self._state == _LENGTH:
            left = self._left
            have = len(data) - start
            if have == left:
                self._resp.body = data[start:]  # type: ignore[union-attr]
                self._finish(True)
                return None
            if have < left:
                self._body += data[start:]
                self._left = left - have
                return None
        if len(data) == start:
            return None
        if self._state == _DONE:  # bytes after a complete answer
            self._close()
            return None
        return data[start:]

    # -- parsing
    def _advance(self) -> None:
        buf = self._buf
        if self._state == _HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    raise ProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes")
                return
            head = bytes(buf[:end])
            del buf[:end + 4]
            self._head(head)
            if self._state == _HEAD:  # an interim 1xx answer
                self._advance()
                return
        state = self._state
        if state == _LENGTH:
            if self._buffered:
                if len(buf) >= self._left:
                    left = self._left
                    if not self._body:  # head and body in one read: one copy
                        body = bytes(buf[:left])
                    else:
                        self._body += buf[:left]
                        body = bytes(self._body)
                    del buf[:left]
                    self._left = 0
                    self._resp.body = body  # type: ignore[union-attr]
                    self._finish(True)
                else:
                    self._body += buf
                    self._left -= len(buf)
                    buf.clear()
            elif buf:
                data = bytes(buf)
                buf.clear()
                self._length_piece(data)
        elif state == _CHUNKED:
            pieces = self._chunked.feed(buf)  # type: ignore[union-attr]
            if self._buffered:
                for piece in pieces:
                    self._body += piece
                if len(self._body) > MAX_BODY_BYTES:
                    raise ProtocolError(f"body larger than {MAX_BODY_BYTES} bytes")
            else:
                for piece in pieces:
                    self._resp._push(piece)  # type: ignore[union-attr]  # pylint: disable=protected-access
            if self._chunked.done:  # type: ignore[union-attr]
                if self._buffered:
                    self._resp.body = bytes(self._body)  # type: ignore[union-attr]
                self._finish(True)
        elif state == _UNTIL_CLOSE and buf:
            if self._buffered:
                self._body += buf
                if len(self._body) > MAX_BODY_BYTES:
                    raise ProtocolError(f"body larger than {MAX_BODY_BYTES} bytes")
            else:
                self._resp._push(bytes(buf))  # type: ignore[union-attr]  # pylint: disable=protected-access
            buf.clear()

    def _length_piece(self, data: bytes) -> None:
        if len(data) >= self._left:
            extra = len(data) > self._left
            data = data[:self._left]
            self._left = 0
            self._resp._push(data)  # type: ignore[union-attr]  # pylint: disable=protected-access
            self._finish(not extra)
        else:
            self._left -= len(data)
            self._resp._push(data)  # type: ignore[union-attr]  # pylint: disable=protected-access

    def _head(self, head: bytes) -> None:
        try:
            start, headers = _parse_head(head)
            status = int(start.split(" ", 2)[1])
        except (IndexError, ValueError, ProtocolError) as exc:
            raise ProtocolError(f"bad status line {head.splitlines()[0][:80]!r}") from exc
        if 100 <= status < 200:
            return
        self._keep = headers.get("connection", "").lower() != "close"
        resp = self._resp = ClientResponse(status, headers) if self._buffered else StreamedResponse(status, headers, self)
        if status in (204, 304):
            self._state = _LENGTH
            self._left = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNKED
            self._chunked = ChunkedDecoder()
        elif "content-length" in headers:
            self._state = _LENGTH
            try:
                self._left = int(headers["content-length"])
            except ValueError as exc:
                raise ProtocolError(f"bad Content-Length {headers['content-length']!r}") from exc
            if self._left < 0:
                raise ProtocolError(f"bad Content-Length {self._left}")
            if self._buffered and self._left > MAX_BODY_BYTES:
                raise ProtocolError(f"body larger than {MAX_BODY_BYTES} bytes")
        else:
            self._state = _UNTIL_CLOSE
            self._keep = False
        if not self._buffered:
            self._resolve(resp)
            if self._state == _LENGTH and self._left == 0:
                self._finish(True)
        elif self._state == _LENGTH and self._left == 0:
            self._finish(True)

    # -- exchange life cycle
    def start(self, payload: bytes, timeout: float, buffered: bool) -> asyncio.Future:
        """Send one request; the future gives the ClientResponse (body read too when buffered).

        It fails with StaleConnection when the connection closes before any byte of an answer arrived.
        """
        self._state = _HEAD
        self._buffered = buffered
        self._got_bytes = False
        if self._body:
            self._body = bytearray()
        self._keep = True
        waiter = self._waiter = self.loop.create_future()
        self._timer = self.loop.call_later(timeout, self._on_timeout)
        self.transport.write(payload)  # type: ignore[union-attr]
        return waiter

    def _take_waiter(self) -> asyncio.Future | None:
        """The exchange's pending future (None if already settled), its deadline cancelled."""
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return waiter if waiter is not None and not waiter.done() else None

    def _resolve(self, resp: ClientResponse) -> None:
        if (waiter := self._take_waiter()) is not None:
            waiter.set_result(resp)

    def _finish(self, reusable: bool) -> None:
        resp = self._resp
        self._state = _DONE
        self._resp = None
        if self._buffered:
            self._resolve(resp)  # type: ignore[arg-type]
        else:
            self._chunked = None
            if resp is not None:
                resp._end(None)  # type: ignore[attr-defined]  # pylint: disable=protected-access
            if self._paused:
                self.resume()
        if reusable and self._keep and not self.closed and not self._buf:
            self.pool.release(self)
        else:
            self._close()

    def _fail(self, exc: BaseException) -> None:
        self._state = _DONE
        resp, self._resp = self._resp, None
        if (waiter := self._take_waiter()) is not None:
            waiter.set_exception(exc)
        elif resp is not None and not self._buffered:
            resp._end(exc)  # type: ignore[attr-defined]  # pylint: disable=protected-access

    def _on_timeout(self) -> None:
        self._timer = None
        self._fail(TimeoutError())
        self._close()

    def abort_exchange(self) -> None:
        """The consumer gave up: drop the connection unless the exchange is over."""
        if self._state != _DONE:
            self._state = _DONE
            self._resp = None
            self._close()

    def pause(self) -> None:
        if not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self.closed:
                self.transport.resume_reading()  # type: ignore[union-attr]

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def close(self) -> None:
        self._close()


class ConnectionPool:
    """Keep-alive connections to one backend."""

    def __init__(self, host: str, port: int, max_idle: int = 64) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.key = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.idle: list[BackendConnection] = []
        self._host_line = f"Host: {self.key}\r\n".encode("latin-1")
        self._heads: dict[tuple[str, str], bytes] = {}

    def head(self, method: str, path: str) -> bytes:
        """Request line and Host header (cached per method and path)."""
        key = (method, path)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 256:
                self._heads.clear()
            head = self._heads[key] = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + self._host_line
        return head

    async def _open(self, timeout: float) -> BackendConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _transport, conn = await loop.create_connection(
                    lambda: BackendConnection(self, loop), self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise BackendConnectError(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc
        return conn

    def release(self, conn: BackendConnection) -> None:
        if len(self.idle) < self.max_idle and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: BackendConnection) -> None:
        if self.idle and conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      timeout: float, buffered: bool = False) -> ClientResponse:
        """Send a request built from a header dict (see send)."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        payload = b"%s%sContent-Length: %d\r\n\r\n%s" % (self.head(method, path), extra, len(body), body)
        return await self.send(payload, timeout, buffered)

    async def send(self, payload: bytes, timeout: float, buffered: bool = False) -> ClientResponse:
        """Send a complete request; a reused connection that dies before answering is retried once fresh.

        One timer covers the exchange: writing, the head and, when buffered, a Content-Length or chunked body.
        Unbuffered, the answer is a StreamedResponse whose body is read with next_piece or read_all.
        """
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return await conn.start(payload, timeout, buffered)
            except StaleConnection:
                continue
            except BaseException:
                conn.close()
                raise
        conn = await self._open(timeout)
        try:
            return await conn.start(payload, timeout, buffered)
        except StaleConnection as exc:
            raise BackendIOError(f"{self.key} closed the connection without answering") from exc
        except BaseException:
            conn.close()
            raise
