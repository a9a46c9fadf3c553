"""scripts/proxy_load.py counts every outcome against a scripted server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "proxy_load.py"


class Scripted(BaseHTTPRequestHandler):
    """Answers the n-th POST by the server's plan: ok, 503, short (fewer tokens) or empty text."""

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.count += 1  # type: ignore[attr-defined]
            n = self.server.count  # type: ignore[attr-defined]
        kind = self.server.plan.get(n, "ok")  # type: ignore[attr-defined]
        if kind == "503":
            self.send_response(503)
            payload = b'{"error": {"type": "no_healthy_engine"}}'
        else:
            tokens = body["max_tokens"] - (1 if kind == "short" else 0)
            text = "" if kind == "empty" else " tok" * tokens
            payload = json.dumps({"choices": [{"text": text}], "usage": {"completion_tokens": tokens}}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # quiet
        pass


def run_against(plan: dict, *extra: str, tmp_path: Path) -> dict:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.lock, server.count, server.plan = threading.Lock(), 0, plan  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out = tmp_path / "load.json"
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), f"http://127.0.0.1:{server.server_address[1]}", "--concurrency", "2",
             "--max-requests", "20", "--seconds", "30", "--out", str(out), *extra],
            capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed
    return printed


def test_counts_every_outcome(tmp_path):
    got = run_against({3: "503", 7: "empty", 9: "short"}, tmp_path=tmp_path)
    assert (got["sent"], got["ok"], got["failed"], got["empty"]) == (20, 18, 2, 1)
    assert got["statuses"] == {"200": 19, "503": 1}
    assert len(got["errors"]) == len(got["error_times"]) == 2
    assert any(e.startswith("HTTP 503") for e in got["errors"])
    assert got["started"] <= min(got["error_times"]) <= max(got["error_times"]) <= got["finished"]


def test_check_tokens_counts_a_short_answer(tmp_path):
    got = run_against({9: "short"}, "--check-tokens", tmp_path=tmp_path)
    assert (got["sent"], got["ok"], got["failed"]) == (20, 19, 1)
    assert got["errors"] == ["short answer: 3 completion tokens, asked for 4"]


def test_stop_file_ends_the_load(tmp_path):
    stop = tmp_path / "stop"
    stop.write_text("now\n")
    got = run_against({}, "--stop-file", str(stop), tmp_path=tmp_path)
    assert got["sent"] == 0 and got["failed"] == 0


def test_unreachable_proxy_is_a_failure(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "http://127.0.0.1:9", "--concurrency", "1",
                           "--max-requests", "2", "--timeout", "2"],
                          capture_output=True, text=True, timeout=60, check=False)
    got = json.loads(proc.stdout)
    assert (got["sent"], got["ok"], got["failed"]) == (2, 0, 2)
    assert got["statuses"] == {"connection": 2}
