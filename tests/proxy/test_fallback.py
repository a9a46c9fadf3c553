"""--fallback: one role serves whole requests while every engine of the other is out of rotation.

That is what keeps a 1P1D cluster answering while restart.yml/upgrade.yml restarts its only prefill or its only
decode instance (the instance is drained first, so the default mode, drained, applies).
"""

from __future__ import annotations

import json
import re

import pytest
from proxy_support import healthcheck, request, wait_until


def drain(proxy: int, role: str, port: int, action: str = "drain") -> None:
    status, _unused, raw = request(proxy, "POST", f"/instances/{action}", {"type": role, "instances": [f"127.0.0.1:{port}"]})
    assert status == 200, raw


def one_pair(cluster, *extra: str) -> tuple[int, int, int]:
    """The 1P1D shape: one prefill engine, one decode engine and the proxy; their ports."""
    p_port = cluster.worker("prefill")
    d_port = cluster.worker("decode")
    return p_port, d_port, cluster.proxy([p_port], [d_port], *extra)


def fallbacks(proxy: int) -> dict[str, int]:
    text = request(proxy, "GET", "/metrics")[2].decode()
    return {m[0]: int(m[1]) for m in re.findall(r'ascend_proxy_fallback_total\{served_by="(\w+)"\} (\d+)', text)}


@pytest.mark.parametrize("stream", [False, True])
def test_drained_prefill_lets_decode_serve_whole_requests(cluster, stream):
    p_port, d_port, proxy = one_pair(cluster)
    drain(proxy, "prefill", p_port)

    status, snap = healthcheck(proxy)
    assert (status, snap["status"], snap["fallback"]) == (200, "degraded", "drained")
    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 3, "stream": stream})

    assert status == 200, raw
    assert (b"t2" in raw) and str(d_port).encode() in raw
    bodies = cluster.bodies()
    assert [(b["role"], b["port"]) for b in bodies] == [("decode", d_port)]
    assert "kv_transfer_params" not in bodies[0]["body"] and bodies[0]["body"]["max_tokens"] == 3
    assert fallbacks(proxy) == {"prefill": 0, "decode": 1}

    drain(proxy, "prefill", p_port, "undrain")
    assert request(proxy, "POST", "/v1/completions", {"prompt": "y", "max_tokens": 2})[0] == 200
    assert [b["role"] for b in cluster.bodies()] == ["decode", "prefill", "decode"]
    assert healthcheck(proxy)[1]["status"] == "ok"


def test_drained_decode_lets_prefill_serve_whole_requests(cluster):
    p_port, d_port, proxy = one_pair(cluster)
    drain(proxy, "decode", d_port)

    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 4})

    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["choices"][0]["text"] == "t0 t1 t2 t3" and answer["served_by"] == p_port
    bodies = cluster.bodies()
    assert [(b["role"], b["body"].get("max_tokens")) for b in bodies] == [("prefill", 4)]
    assert "kv_transfer_params" not in bodies[0]["body"]
    assert fallbacks(proxy) == {"prefill": 1, "decode": 0}
    assert request(proxy, "GET", "/v1/models")[0] == 200


def test_fallback_off_answers_503(cluster):
    p_port, _unused, proxy = one_pair(cluster, "--fallback", "off")
    drain(proxy, "prefill", p_port)

    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x"})

    assert status == 503 and json.loads(raw)["error"]["type"] == "no_healthy_engine"
    assert healthcheck(proxy)[0] == 503
    assert cluster.bodies() == []


@pytest.mark.parametrize("mode, served", [("drained", False), ("always", True)])
def test_a_dead_role_falls_back_only_in_always_mode(cluster, mode, served):
    p_port, d_port, proxy = one_pair(cluster, "--fallback", mode)
    cluster.kill_worker(p_port)
    wait_until(lambda: healthcheck(proxy)[1]["prefill"][0]["state"] == "down", 5)

    status, _unused, raw = request(proxy, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})

    if served:
        assert status == 200 and json.loads(raw)["served_by"] == d_port
        assert healthcheck(proxy)[1]["status"] == "degraded"
    else:
        assert status == 503, raw
        assert healthcheck(proxy)[1]["status"] == "unavailable"


def test_both_roles_out_is_503(cluster):
    p_port, d_port, proxy = one_pair(cluster)
    drain(proxy, "prefill", p_port)
    drain(proxy, "decode", d_port)

    assert request(proxy, "POST", "/v1/completions", {"prompt": "x"})[0] == 503
    assert healthcheck(proxy)[0] == 503
