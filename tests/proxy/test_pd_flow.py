"""PD request flow, streaming, admin endpoints and error answers of ascend_pd_proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from proxy_support import PROXY_SRC, engine_state, healthcheck, request, wait_until

PREFILL_KV = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
              "remote_block_ids": None, "remote_host": None, "remote_port": None}


def completion_body(path: str, stream: bool, with_mct: bool) -> dict:
    body: dict = {"model": "glm-5", "max_tokens": 5, "temperature": 0, "ignore_eos": True}
    if path.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": "The future of AI is"}]
    else:
        body["prompt"] = "The future of AI is"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if with_mct:
        body["max_completion_tokens"] = 5
    return body


def sse_events(raw: bytes) -> list[str]:
    return [line[len("data: "):] for line in raw.decode().split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("with_mct", [False, True])
def test_pd_flow_field_by_field(cluster, path, stream, with_mct):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [d_port])
    body = completion_body(path, stream, with_mct)

    status, headers, raw = request(proxy, "POST", path, body)

    assert status == 200
    if stream:
        events = sse_events(raw)
        assert events[-1] == "[DONE]"
        assert [json.loads(e)["choices"][0]["text"] for e in events[:-1]] == [f"t{i}" for i in range(5)]
    else:
        assert json.loads(raw)["choices"][0]["text"] == "t0 t1 t2 t3 t4"
    prefill, decode = cluster.bodies()
    assert (prefill["role"], prefill["path"], decode["role"], decode["path"]) == ("prefill", path, "decode", path)
    expected_prefill = {k: v for k, v in body.items() if k != "stream_options"}
    expected_prefill.update(max_tokens=1, min_tokens=1, stream=False, kv_transfer_params=PREFILL_KV)
    if with_mct:
        expected_prefill["max_completion_tokens"] = 1
    assert prefill["body"] == expected_prefill
    prefill_answer_kv = {"do_remote_prefill": True, "do_remote_decode": False, "remote_engine_id": f"engine-{p_port}",
                         "remote_block_ids": [1, 2, 3], "remote_host": "127.0.0.1", "remote_port": p_port,
                         "valid": True}
    assert decode["body"] == {**body, "kv_transfer_params": prefill_answer_kv}
    assert prefill["request_id"] == decode["request_id"] == headers["x-request-id"]


def test_metrics_models_and_client_errors(cluster):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [d_port])
    for _unused in range(3):
        assert request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200
    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"model": "bad-model", "prompt": "x"})
    assert status == 404 and b"bad-model does not exist" in raw
    assert request(proxy, "POST", "/v1/completions", None)[0] == 400
    status, _unused, raw = request(proxy, "GET", "/v1/models")
    assert status == 200 and json.loads(raw)["data"][0]["owned_by"] == f"fake:{d_port}"

    status, headers, raw = request(proxy, "GET", "/metrics")
    text = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert f'ascend_proxy_requests_total{{role="prefill",engine="127.0.0.1:{p_port}",outcome="ok"}} 3' in text
    assert f'ascend_proxy_requests_total{{role="decode",engine="127.0.0.1:{d_port}",outcome="ok"}} 3' in text
    assert f'ascend_proxy_requests_total{{role="prefill",engine="127.0.0.1:{p_port}",outcome="http_4xx"}} 1' in text
    assert f'ascend_proxy_engine_up{{role="decode",engine="127.0.0.1:{d_port}"}} 1' in text
    assert 'ascend_proxy_request_duration_seconds_count 5' in text  # 3 ok + 404 + 400 body
    assert "ascend_proxy_retries_total 0" in text
    # access log lines are written in batches, at most 0.2 s after the request
    wait_until(lambda: "POST /v1/completions status=404 engines=p:127.0.0.1" in cluster.proxy_log(), 3)
    assert "POST /v1/completions status=200 engines=p:127.0.0.1" in cluster.proxy_log()
    assert '"prompt"' not in cluster.proxy_log()


def test_decode_dies_mid_stream_ends_with_error_event(cluster):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode", None, "--die-after-chunks", "2")
    proxy = cluster.proxy([p_port], [d_port])

    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 6, "stream": True})

    assert status == 200
    events = sse_events(raw)
    assert [json.loads(e)["choices"][0]["text"] for e in events[:2]] == ["t0", "t1"]
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["engine"] == f"127.0.0.1:{d_port}" and error["role"] == "decode"
    assert "ascend_proxy_stream_aborts_total 1" in request(proxy, "GET", "/metrics")[2].decode()


def test_truncated_decode_body_is_retried_not_forwarded(cluster):
    p_port = cluster.worker("prefill")
    dying = cluster.worker("decode", None, "--die-after-chunks", "0")
    good = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [dying, good])

    answers = [request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 4}) for _unused in range(4)]

    for status, _unused, raw in answers:
        assert status == 200
        assert json.loads(raw) == {"object": "text_completion", "served_by": good, "choices": [
            {"index": 0, "text": "t0 t1 t2 t3", "finish_reason": "length"}],
            "usage": {"completion_tokens": 4}, "kv_transfer_params": None}
    retries = [ln for ln in request(proxy, "GET", "/metrics")[2].decode().splitlines()
               if ln.startswith("ascend_proxy_retries_total ")]
    assert retries in (["ascend_proxy_retries_total 1"], ["ascend_proxy_retries_total 2"])
    # the KV handle of the still-healthy prefill engine was reused: one prefill per client request
    assert sum(1 for b in cluster.bodies() if b["role"] == "prefill") == 4


def test_decode_5xx_is_retried_with_a_fresh_prefill(cluster):
    """A decode engine that answers 5xx may have refused the KV handle (its prefill died after answering):
    the retry runs the prefill again instead of handing the same handle to the next decode engine."""
    p_port = cluster.worker("prefill")
    broken = cluster.worker("decode", None, "--fail-status", "500")  # first in the list: the first pick
    good = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [broken, good])

    answers = [request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 4}) for _unused in range(4)]

    assert [status for status, _unused, _raw in answers] == [200] * 4
    assert {json.loads(raw)["served_by"] for _unused, _hdrs, raw in answers} == {good}
    retries = [int(ln.split()[1]) for ln in request(proxy, "GET", "/metrics")[2].decode().splitlines()
               if ln.startswith("ascend_proxy_retries_total ")]
    assert retries and retries[0] >= 1
    # one extra prefill per retry: the refused handle was not reused
    assert sum(1 for b in cluster.bodies() if b["role"] == "prefill") == 4 + retries[0]


def test_all_decoders_down_is_an_honest_503(cluster):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [d_port])
    cluster.kill_worker(d_port)
    wait_until(lambda: engine_state(proxy, "decode", d_port)["state"] == "down", 3)

    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x"})

    assert status == 503
    err = json.loads(raw)["error"]
    assert err["type"] == "no_healthy_engine" and err["role"] == "decode"
    hc_status, snap = healthcheck(proxy)
    assert hc_status == 503 and snap["status"] == "unavailable"
    assert request(proxy, "GET", "/v1/models")[0] == 503


def test_slow_decoder_gives_504(cluster):
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode", None, "--delay", "3")
    proxy = cluster.proxy([p_port], [d_port], "--request-timeout", "0.5")
    start = time.monotonic()

    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x"})

    assert status == 504 and time.monotonic() - start < 2.5
    err = json.loads(raw)["error"]
    assert (err["type"], err["engine"], err["role"]) == ("timeout", f"127.0.0.1:{d_port}", "decode")


def test_drain_lets_in_flight_finish_and_sends_nothing_new(cluster):
    p_port = cluster.worker("prefill")
    slow = cluster.worker("decode", None, "--delay", "1.2")
    other = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [slow, other])
    result: list = []
    t = threading.Thread(target=lambda: result.append(
        request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 3})))
    t.start()
    wait_until(lambda: engine_state(proxy, "decode", slow)["outstanding"] == 1, 3, 0.01)

    status, _unused, raw = request(proxy, "POST", "/instances/drain", {"type": "decode", "instances": [f"127.0.0.1:{slow}"]})
    assert status == 200, raw
    state = engine_state(proxy, "decode", slow)
    assert state["draining"] is True and state["outstanding"] == 1
    for _unused in range(4):
        assert json.loads(request(proxy, "POST", "/v1/completions", {"prompt": "y"})[2])["served_by"] == other
    t.join(5)
    status, _unused, raw = result[0]
    assert status == 200 and json.loads(raw)["choices"][0]["text"] == "t0 t1 t2"
    assert engine_state(proxy, "decode", slow)["outstanding"] == 0
    assert sum(1 for b in cluster.bodies() if b["port"] == slow) == 1

    assert request(proxy, "POST", "/instances/undrain", {"type": "decode", "instances": f"127.0.0.1:{slow}"})[0] == 200
    assert engine_state(proxy, "decode", slow)["draining"] is False


def test_add_and_remove_instances(cluster):
    p_port = cluster.worker("prefill")
    first = cluster.worker("decode")
    proxy = cluster.proxy([p_port], [first], "--success-threshold", "1")
    second = cluster.worker("decode")

    status, _unused, raw = request(proxy, "POST", "/instances/add", {"type": "decode", "instances": [f"127.0.0.1:{second}"]})
    assert status == 200
    assert json.loads(raw)["current_decode_instances"] == [f"127.0.0.1:{first}", f"127.0.0.1:{second}"]
    wait_until(lambda: engine_state(proxy, "decode", second)["state"] == "up", 3)
    served = {json.loads(request(proxy, "POST", "/v1/completions", {"prompt": "x"})[2])["served_by"]
              for _unused in range(4)}
    assert served == {first, second}

    status, _unused, raw = request(proxy, "POST", "/instances/remove", {"type": "decode", "instances": f"127.0.0.1:{first}"})
    assert status == 200 and json.loads(raw)["current_decode_instances"] == [f"127.0.0.1:{second}"]
    served = {json.loads(request(proxy, "POST", "/v1/completions", {"prompt": "x"})[2])["served_by"]
              for _unused in range(3)}
    assert served == {second}

    assert request(proxy, "POST", "/instances/add", {"type": "router", "instances": ["127.0.0.1:1"]})[0] == 400
    assert request(proxy, "POST", "/instances/add", {"type": "decode", "instances": ["nohost"]})[0] == 400
    assert request(proxy, "POST", "/instances/remove", {"type": "decode", "instances": ["127.0.0.1:1"]})[0] == 404


def test_cli_rejects_mismatched_host_and_port_counts():
    proc = subprocess.run([sys.executable, "-m", "ascend_pd_proxy", "--prefiller-hosts", "a", "b",
                           "--prefiller-ports", "1"], capture_output=True, text=True, timeout=20,
                          env={"PYTHONPATH": str(PROXY_SRC), "PATH": "/usr/bin:/bin"}, check=False)
    assert proc.returncode == 2
    assert "2 --prefiller-hosts but 1 --prefiller-ports" in proc.stderr
