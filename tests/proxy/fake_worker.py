"""A tiny vLLM-like engine for proxy tests (stdlib only, run as a subprocess).

It speaks the PD kv_transfer_params flow (a prefill engine asked without do_remote_decode answers the whole
request, as vLLM does), records every completion body it gets (JSON lines, --record),
and can misbehave on demand: --delay (slow answers), --die-after-chunks (SIGKILL-like exit mid-stream),
--fail-status (every answer, /health too, is that status, like a vLLM rank whose DP group lost a member);
--framing chunked|close sends non-streamed answers chunked or delimited by closing the connection.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = argparse.Namespace()
LOCK = threading.Lock()


def record(entry: dict) -> None:
    if ARGS.record:
        with LOCK, open(ARGS.record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *_args: object) -> None:
        return

    def _send(self, status: int, obj: object) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if ARGS.framing == "chunked":  # the body in two chunks
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(data) // 2
            self._chunk(data[:half])
            self._chunk(data[half:])
            self.wfile.write(b"0\r\n\r\n")
            return
        if ARGS.framing == "close":  # no length: the body ends when the connection closes
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if ARGS.fail_status:
            self._send(ARGS.fail_status, {"error": {"message": "DP group incomplete"}})
        elif self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "glm-5", "owned_by": f"fake:{ARGS.port}"}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/tokenize":  # asked by vllm-router before it routes
            self._send(200, {"tokens": [1, 2, 3], "count": 3, "max_model_len": 4096})
            return
        if ARGS.fail_status:
            self._send(ARGS.fail_status, {"error": {"message": "DP group incomplete"}})
            return
        if not self.path.endswith("completions"):
            self._send(404, {"error": f"no route {self.path}"})
            return
        record({"role": ARGS.role, "port": ARGS.port, "path": self.path, "body": body,
                "request_id": self.headers.get("X-Request-Id")})
        if body.get("model") == "bad-model":
            self._send(404, {"error": {"message": "model bad-model does not exist"}})
            return
        if ARGS.delay:
            time.sleep(ARGS.delay)
        if ARGS.role == "prefill" and (body.get("kv_transfer_params") or {}).get("do_remote_decode"):
            self._send(200, self._prefill_answer(body))
        elif body.get("stream"):
            self._stream(body)
        else:
            n = int(body.get("max_tokens", 16))
            text = " ".join(f"t{i}" for i in range(n))
            answer = {"object": "text_completion", "served_by": ARGS.port, "choices": [
                {"index": 0, "text": text, "finish_reason": "length"}],
                "usage": {"completion_tokens": n}, "kv_transfer_params": None}
            if ARGS.die_after_chunks is not None:
                self._die_mid_body(json.dumps(answer).encode())
            self._send(200, answer)

    def _die_mid_body(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        os._exit(9)

    def _prefill_answer(self, body: dict) -> dict:
        kv = body.get("kv_transfer_params") or {}
        ok = kv.get("do_remote_decode") is True and body.get("max_tokens") == 1
        return {"object": "text_completion", "served_by": ARGS.port,
                "choices": [{"index": 0, "text": "t0", "finish_reason": "length"}],
                "kv_transfer_params": {"do_remote_prefill": True, "do_remote_decode": False,
                                       "remote_engine_id": f"engine-{ARGS.port}", "remote_block_ids": [1, 2, 3],
                                       "remote_host": "127.0.0.1", "remote_port": ARGS.port, "valid": ok}}

    def _stream(self, body: dict) -> None:
        n = int(body.get("max_tokens", 16))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(n):
            if ARGS.die_after_chunks is not None and i == ARGS.die_after_chunks:
                self.wfile.flush()
                os._exit(9)
            event = {"served_by": ARGS.port, "choices": [{"index": 0, "text": f"t{i}"}]}
            self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            if ARGS.chunk_delay:
                time.sleep(ARGS.chunk_delay)
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--role", choices=["prefill", "decode"], required=True)
    p.add_argument("--record", default="")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    p.add_argument("--die-after-chunks", type=int, default=None)
    p.add_argument("--fail-status", type=int, default=0, help="answer every request with this status (a broken DP group)")
    p.add_argument("--framing", choices=["length", "chunked", "close"], default="length",
                   help="how non-streamed answers end: Content-Length, chunked, or by closing the connection")
    p.parse_args(namespace=ARGS)
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
