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


def test_differences_by_role_and_what_matters():
    snaps = {
        "d0": {"driver": {"Version": "25.2.1"}, "kernel": "6.1", "weights": {"a": "1"}},
        "d1": {"driver": {"Version": "24.1.0"}, "kernel": "6.1", "weights": {"a": "1"}},
        "p0": {"driver": {"Version": "23.0.0"}, "kernel": "5.10"},
    }
    roles = {"d0": "decode", "d1": "decode", "p0": "prefill"}
    rows = differences(snaps, roles, ("driver", "weights"))
    assert rows == [{"role": "decode", "key": "driver.Version", "values": {"d0": "25.2.1", "d1": "24.1.0"},
                     "matters": True}]
    snaps["d1"]["weights"] = {}
    keys = [(r["key"], r["matters"], r["values"]["d1"]) for r in differences(snaps, roles, ("weights",))]
    assert ("weights.a", True, "<missing>") in keys
