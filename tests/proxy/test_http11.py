"""The proxy's HTTP/1.1 layer and JSON shortcuts: parsing units, and wire-level cases on both event loops."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import time

import pytest

from proxy_support import PROXY_SRC, engine_state, request, wait_until

sys.path.insert(0, str(PROXY_SRC))
from ascend_pd_proxy import jsonfast  # noqa: E402  pylint: disable=wrong-import-position
from ascend_pd_proxy.http11 import ChunkedDecoder, ProtocolError, parse_request_head  # noqa: E402  pylint: disable=wrong-import-position

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"))]


# ---- units --------------------------------------------------------------------------------------------------------

def test_chunked_decoder_any_split():
    wire = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    for cut in range(1, len(wire)):
        for cut2 in range(cut, len(wire) + 1, 3):
            dec, buf, out = ChunkedDecoder(), bytearray(), b""
            for part in (wire[:cut], wire[cut:cut2], wire[cut2:]):
                buf += part
                out += b"".join(dec.feed(buf))
            assert dec.done and out == b"hello world!" and bytes(buf) == b"NEXT", (cut, cut2)


def test_chunked_decoder_rejects_a_bad_size_line():
    with pytest.raises(ProtocolError):
        ChunkedDecoder().feed(bytearray(b"zz\r\nhello\r\n"))


def test_request_head_parsing():
    req = parse_request_head(b"post /v1/completions?x=1 HTTP/1.0\r\nX-Request-Id:  abc \r\nConnection: Keep-Alive")
    assert (req.method, req.path, req.keep_alive, req.headers["x-request-id"]) == ("POST", "/v1/completions", True, "abc")
    assert parse_request_head(b"GET / HTTP/1.1").keep_alive
    assert not parse_request_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive
    for bad in (b"GET /\r\nHost: x", b"GET / HTTP/1.1\r\nno colon here", b"GET / SPDY/3 x"):
        with pytest.raises(ProtocolError):
            parse_request_head(bad)


@pytest.mark.parametrize("text", ['{"a": 1, "b": [1, 2.5, null, true], "c": {"d": "\\u00e9x"}}', '{}', '[1, 2]', '"s"',
                                  ' {"a": 1} ', '{"a": 1}\n', '{"é": "ü"}'])
def test_jsonfast_matches_json(text):
    for data in (text.encode(), text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode()):
        assert jsonfast.loads(data) == json.loads(data)
    value = json.loads(text)
    assert jsonfast.dumps(value) == json.dumps(value).encode()


@pytest.mark.parametrize("bad", [b"", b"{", b'{"a": 1} x', b"\xff\xfe\xfd", b"nope"])
def test_jsonfast_raises_like_json(bad):
    with pytest.raises(ValueError) as ours:
        jsonfast.loads(bad)
    with pytest.raises(ValueError) as theirs:
        json.loads(bad)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("data, expected", [
    (b'{"a": 1, "kv_transfer_params": {"x": [1, 2], "y": null}}', ({"x": [1, 2], "y": None}, b'{"x": [1, 2], "y": null}')),
    (b'{"kv_transfer_params":null}', (None, b"null")),
    (b'{"a": {"kv_transfer_params": {"x": 1}}}', None),  # nested: not the answer's own field
    (b'{"kv_transfer_params": {"x": 1}, "a": 2}', None),  # not last: decoded whole instead
    (b'{"a": "\\"kv_transfer_params\\": 1}"}', None),  # inside a string
    (b'{"a": "x", "kv_transfer_params": {"x": 1} ', None),  # unterminated
    (b'{"choices": [{"text": "t0"}], "kv_transfer_params": {"remote_host": "h\\u00e9"}}\n',
     ({"remote_host": "h\u00e9"}, b'{"remote_host": "h\\u00e9"}')),
])
def test_jsonfast_last_member(data, expected):
    assert jsonfast.last_member(data, "kv_transfer_params") == expected


# ---- on the wire, both event loops --------------------------------------------------------------------------------

def raw_exchange(port: int, payload: bytes, shutdown: bool = False, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the proxy closes the connection (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            out += data
        return out


def post_bytes(body: dict, extra: bytes = b"", close: bool = True) -> bytes:
    data = json.dumps(body).encode()
    conn = b"Connection: close\r\n" if close else b""
    return b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s%s\r\n%s" % (len(data), conn, extra, data)


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream of Content-Length responses (100 Continue skipped)."""
    out = []
    while raw:
        head, _sep, raw = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 100:
            continue
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                      if line.lower().startswith(b"content-length:"))
        out.append((status, raw[:length]))
        raw = raw[length:]
    return out


@pytest.mark.parametrize("loop", LOOPS)
def test_wire_cases(cluster, loop):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [d_port], "--loop", loop)
    assert f"loop={loop}" in cluster.proxy_log()
    body = {"prompt": "x", "max_tokens": 3}

    # two pipelined requests in one write, then a third on the same connection
    two = post_bytes(body, close=False) + post_bytes({"prompt": "y", "max_tokens": 2}, close=False)
    got = responses(raw_exchange(proxy, two + post_bytes({"prompt": "z", "max_tokens": 1})))
    assert [(s, json.loads(b)["choices"][0]["text"]) for s, b in got] == [(200, "t0 t1 t2"), (200, "t0 t1"), (200, "t0")]

    # chunked request body with Expect: 100-continue
    data = json.dumps(body).encode()
    chunked = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
               b"Connection: close\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, data[:5], len(data) - 5, data[5:]))
    raw = raw_exchange(proxy, chunked)
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert [(s, json.loads(b)["choices"][0]["text"]) for s, b in responses(raw)] == [(200, "t0 t1 t2")]

    # the client half-closes after its request: the answer still comes
    got = responses(raw_exchange(proxy, post_bytes(body), shutdown=True))
    assert got and got[0][0] == 200 and json.loads(got[0][1])["choices"][0]["text"] == "t0 t1 t2"

    # malformed request line and oversized header block: 400 and the connection closes
    for bad in (b"BLAH\r\n\r\n", b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"):
        raw = raw_exchange(proxy, bad)
        assert raw.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in raw
        assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "bad_request"

    # streaming still works on this loop
    status, _headers, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2, "stream": True})
    assert status == 200 and raw.decode().endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_backend_answers_chunked_or_close_delimited(cluster, loop, framing):
    p_port = cluster.worker("prefill", None, "--framing", framing)
    d_port = cluster.worker("decode", None, "--framing", framing)
    proxy = cluster.proxy([p_port], [d_port], "--loop", loop)
    for _unused in range(3):
        status, _headers, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 4})
        assert status == 200 and json.loads(raw)["choices"][0]["text"] == "t0 t1 t2 t3"
    prefill, decode = cluster.bodies()[:2]
    assert decode["body"]["kv_transfer_params"]["remote_engine_id"] == f"engine-{p_port}"
    assert prefill["request_id"] == decode["request_id"]


@pytest.mark.parametrize("loop", LOOPS)
def test_client_gone_mid_stream_frees_the_engine(cluster, loop):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode", None, "--chunk-delay", "0.05")
    proxy = cluster.proxy([p_port], [d_port], "--loop", loop)
    body = json.dumps({"prompt": "x", "max_tokens": 40, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", proxy), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    wait_until(lambda: engine_state(proxy, "decode", d_port)["outstanding"] == 0, 5)
    metrics = request(proxy, "GET", "/metrics")[2].decode()
    assert f'ascend_proxy_requests_total{{role="decode",engine="127.0.0.1:{d_port}",outcome="client_disconnect"}} 1' \
        in metrics
    status, _headers, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
    assert status == 200 and json.loads(raw)["choices"][0]["text"] == "t0 t1"
