"""The cluster snapshot helpers: cached weights manifest, launch normalisation, role differences."""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.ascend_ops.vllm.plugins.module_utils._snapshot import (
    CACHE_NAME, differences, launch_config, parse_key_values, weights_manifest)


def test_parse_key_values_reads_version_info():
    text = "Version=25.2.1\nfirmware_version=7.7.0.6.236\n# comment\nnot a pair\n"
    assert parse_key_values(text) == {"Version": "25.2.1", "firmware_version": "7.7.0.6.236"}


def test_manifest_hashes_once_then_reuses_the_cache(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "config.json").write_text("{}")
    manifest, hashed = weights_manifest(str(tmp_path))
    assert hashed == 2
    assert manifest["a.safetensors"] == hashlib.sha256(b"x" * 100).hexdigest()
    assert json.loads((tmp_path / CACHE_NAME).read_text())["config.json"]["size"] == 2
    again, hashed = weights_manifest(str(tmp_path))
    assert (again, hashed) == (manifest, 0)
    # A changed file is hashed again; the cache entry of the other one is reused.
    (tmp_path / "a.safetensors").write_bytes(b"y" * 100)
    os.utime(tmp_path / "a.safetensors", ns=(1, 1))
    changed, hashed = weights_manifest(str(tmp_path))
    assert hashed == 1
    assert changed["a.safetensors"] == hashlib.sha256(b"y" * 100).hexdigest()


def test_manifest_without_write_leaves_no_cache(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"z")
    manifest, hashed = weights_manifest(str(tmp_path), write=False)
    assert hashed == 1 and list(manifest) == ["a.safetensors"]
    assert not (tmp_path / CACHE_NAME).exists()


def test_launch_config_drops_host_and_rank_values():
    env = 'HCCL_IF_IP="10.0.0.1"\nASCEND_RT_VISIBLE_DEVICES="4,5"\nHCCL_BUFFSIZE="256"\n'
    script = "#!/bin/bash\nexec vllm serve /m --host 0.0.0.0 --port 6722 --data-parallel-rank 5 --enforce-eager\n"
    assert launch_config(env, script) == {
        "env": {"HCCL_BUFFSIZE": "256"},
        "flags": {"model": "/m", "--host": "0.0.0.0", "--enforce-eager": True},
    }


def test_launch_config_drops_instance_values_and_reads_json_flags():
    """Two instances of a role differ in their DP master and engine_id only: nothing to report."""
    def script(master, engine_id, extra):
        kv = json.dumps({"kv_role": "kv_consumer", "kv_port": "30100", "engine_id": engine_id})
        return (f"exec vllm serve /m --data-parallel-address {master} --kv-transfer-config '{kv}'"
                f" --additional-config '{json.dumps(extra)}'\n")
    a = launch_config("", script("10.0.0.1", "2", {"enable_mlapo": True}))
    b = launch_config("", script("10.0.0.3", "3", {"enable_mlapo": True}))
    assert a == b
    assert a["flags"]["--kv-transfer-config"] == {"kv_role": "kv_consumer", "kv_port": "30100"}
    # A host left on another version's rendering shows the setting that moved, by key.
    old = launch_config('VLLM_ASCEND_ENABLE_MLAPO="1"\n', script("10.0.0.3", "3", {}))
    rows = differences({"d0": {"launch": a}, "d3": {"launch": old}, "d1": {"launch": b}},
                       {"d0": "decode", "d1": "decode", "d3": "decode"})
    assert [(r["key"], r["odd"]) for r in rows] == [
        ("launch.env.VLLM_ASCEND_ENABLE_MLAPO", ["d3"]),
        ("launch.flags.--additional-config.enable_mlapo", ["d3"]),
    ]


def test_differences_by_role_and_what_matters():
    snaps = {
        "d0": {"driver": {"Version": "25.2.1"}, "kernel": "6.1", "weights": {"a": "1"}},
        "d1": {"driver": {"Version": "24.1.0"}, "kernel": "6.1", "weights": {"a": "1"}},
        "p0": {"driver": {"Version": "23.0.0"}, "kernel": "5.10"},
    }
    roles = {"d0": "decode", "d1": "decode", "p0": "prefill"}
    rows = differences(snaps, roles, ("driver", "weights"))
    assert rows == [{"role": "decode", "key": "driver.Version", "values": {"d0": "25.2.1", "d1": "24.1.0"},
                     "odd": ["d0", "d1"], "matters": True}]
    snaps["d1"]["weights"] = {}
    keys = [(r["key"], r["matters"], r["values"]["d1"]) for r in differences(snaps, roles, ("weights",))]
    assert ("weights.a", True, "<missing>") in keys


def test_differences_name_the_odd_host():
    snaps = {h: {"driver": {"Version": "25.2.1"}} for h in ("d0", "d1", "d2")}
    snaps["d3"] = {"driver": {"Version": "25.2.0"}}
    rows = differences(snaps, dict.fromkeys(snaps, "decode"), ("driver",))
    assert [(r["key"], r["odd"], r["matters"]) for r in rows] == [("driver.Version", ["d3"], True)]
