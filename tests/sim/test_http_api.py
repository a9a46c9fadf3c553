"""OpenAI endpoints, streaming, errors and metrics of a live sim server."""

from __future__ import annotations

import http.client
import json
import re
from typing import Iterator

import pytest

from sim_support import free_port, health, http_call, launcher, make_env, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One healthy single-rank server shared by this module; yields its port."""
    tmp = tmp_path_factory.mktemp("api")
    env = make_env(tmp)
    port = free_port()
    with launcher(env, tmp) as start:
        proc = start("serve", env["MODEL"], "--port", str(port), "--served-model-name", "glm-5",
                     "--max-model-len", "64", env={"VLLM_SIM_STARTUP_DELAY": "0.6"})
        wait_for(lambda: health(port) is not None, what="port answering")
        assert health(port) == 503  # still "loading weights"
        wait_for(lambda: health(port) == 200, what="ready")
        yield port
        assert "Application startup complete." in proc.output()
        assert re.search(r'"POST /v1/completions HTTP/1.1" 200 OK', proc.output())
        assert "Received request cmpl-" in proc.output()


def _metric(port: int, name: str, labels: str = "") -> float:
    text = http_call(port, "GET", "/metrics")[1].decode()
    match = re.search(rf"^{re.escape(name)}{{[^}}]*{re.escape(labels)}[^}}]*}} (\S+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match[1])


def test_models_and_tokenize(server: int) -> None:
    status, body = http_call(server, "GET", "/v1/models")
    assert status == 200
    model = json.loads(body)["data"][0]
    assert (model["id"], model["max_model_len"]) == ("glm-5", 64)
    status, body = http_call(server, "POST", "/tokenize", {"model": "glm-5", "prompt": "a b c"})
    tok = json.loads(body)
    assert status == 200 and tok["count"] == 3 and len(tok["tokens"]) == 3 and tok["max_model_len"] == 64
    assert http_call(server, "POST", "/v1/completions/render", {"model": "glm-5"})[0] == 404


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_completion_honours_max_tokens_and_is_deterministic(server: int, field: str) -> None:
    req = {"model": "glm-5", "prompt": "The future of AI is", field: 7}
    first = json.loads(http_call(server, "POST", "/v1/completions", req)[1])
    second = json.loads(http_call(server, "POST", "/v1/completions", req)[1])
    assert first["object"] == "text_completion" and first["id"].startswith("cmpl-")
    assert first["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert len(first["choices"][0]["text"].split()) == 7
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["choices"][0]["text"] == second["choices"][0]["text"]


def test_chat_stream_sse_with_usage(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    body = {"model": "glm-5", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4,
            "stream": True, "stream_options": {"include_usage": True}}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    events = [line[6:] for line in resp.read().decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in content if t]) == 4
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-1]["usage"]["prompt_tokens"] == 2


def test_errors(server: int) -> None:
    status, body = http_call(server, "POST", "/v1/completions", raw=b"{not json")
    err = json.loads(body)["error"]
    assert status == 400 and {"message", "type", "code"} <= set(err)
    status, body = http_call(server, "POST", "/v1/completions", {"model": "glm-5", "prompt": "w " * 70})
    assert status == 400 and "context length" in json.loads(body)["error"]["message"]
    assert http_call(server, "GET", "/nope")[0] == 404
    status, body = http_call(server, "POST", "/v1/completions", {"model": "other", "prompt": "x"})
    assert status == 404 and "`other` does not exist" in json.loads(body)["error"]["message"]


def test_keep_alive_and_metrics_move(server: int) -> None:
    before = _metric(server, "vllm:generation_tokens_total")
    success = _metric(server, "vllm:request_success_total", 'finished_reason="length"')
    ttft = _metric(server, "vllm:time_to_first_token_seconds_count")
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    for _request in range(3):  # one connection, three requests
        conn.request("POST", "/v1/completions", json.dumps({"model": "glm-5", "prompt": "x y", "max_tokens": 5}),
                     {"Content-Type": "application/json"})
        assert conn.getresponse().read()
    assert _metric(server, "vllm:generation_tokens_total") == before + 15
    assert _metric(server, "vllm:prompt_tokens_total") >= 6
    assert _metric(server, "vllm:request_success_total", 'finished_reason="length"') == success + 3
    assert _metric(server, "vllm:time_to_first_token_seconds_count") == ttft + 3
    text = http_call(server, "GET", "/metrics")[1].decode()
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 'vllm:time_per_output_token_seconds_bucket{engine="0",model_name="glm-5",le="+Inf"}'):
        assert name in text
