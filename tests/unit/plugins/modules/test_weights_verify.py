"""Tests for the weights_verify module: in-process and through the real `ansible` CLI."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests" / "unit"))

from weights_helpers import Checkpoint, make_checkpoint, run_cli  # noqa: E402

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.modules import weights_verify  # noqa: E402


def run_module(capsys, args: dict) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        weights_verify.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def ckpt(tmp_path: Path) -> Checkpoint:
    return make_checkpoint(tmp_path / "GLM-5-w8a8", filler_shards=3)


def test_module_reports_counts_read_only(capsys, ckpt: Checkpoint) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in ckpt.path.iterdir()}
    result = run_module(capsys, {"path": str(ckpt.path), "_ansible_check_mode": True})
    assert (result["changed"], result["shard_count"], result["tensor_count"]) == (False, 5, 13)
    assert result["total_bytes"] == json.loads(ckpt.index_path.read_text())["metadata"]["total_size"]
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.path.iterdir()} == before


def test_module_manifest_dict_bad_hash(capsys, ckpt: Checkpoint) -> None:
    name = "model-00004-of-00005.safetensors"
    good = hashlib.sha256((ckpt.path / name).read_bytes()).hexdigest()
    assert run_module(capsys, {"path": str(ckpt.path), "manifest": {name: good}})["manifest_checked"] == [name]
    result = run_module(capsys, {"path": str(ckpt.path), "manifest": {name: "f" * 64}})
    assert result["failed"] is True and result["shard"] == name and "manifest says " + "f" * 64 in result["msg"]


def test_module_rejects_manifest_of_wrong_type(capsys, ckpt: Checkpoint) -> None:
    result = run_module(capsys, {"path": str(ckpt.path), "manifest": [1, 2]})
    assert result["failed"] is True and "manifest must be a file path or a dict" in result["msg"]


def test_module_names_first_bad_shard(capsys, ckpt: Checkpoint) -> None:
    for name in ("model-00002-of-00005.safetensors", "model-00004-of-00005.safetensors"):
        (ckpt.path / name).write_bytes((ckpt.path / name).read_bytes()[:100])
    result = run_module(capsys, {"path": str(ckpt.path)})
    assert result["failed"] is True and result["shard"] == "model-00002-of-00005.safetensors"
    assert re.search(r"model-00002-of-00005\.safetensors: .*truncated", result["msg"])


def test_cli_require_mtp_fails_before_adjust_and_passes_after(ckpt: Checkpoint) -> None:
    status, result = run_cli("ascend_ops.vllm.weights_verify", "path=%s require_mtp=true" % ckpt.path)
    assert status == "FAILED" and result["tensor"] == "model.layers.4.embed_tokens.weight"
    status, result = run_cli("ascend_ops.vllm.mtp_weights", "path=%s" % ckpt.path)
    assert (status, result["changed"]) == ("CHANGED", True)
    status, result = run_cli("ascend_ops.vllm.weights_verify", "path=%s require_mtp=true" % ckpt.path, "--check")
    assert (status, result["changed"], result["shard_count"], result["tensor_count"]) == ("SUCCESS", False, 6, 15)
