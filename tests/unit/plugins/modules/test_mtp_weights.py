"""Tests for the mtp_weights module: in-process, and through the real `ansible` CLI in all four modes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests" / "unit"))

from weights_helpers import Checkpoint, make_checkpoint, run_cli, tensor_bytes  # noqa: E402

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.modules import mtp_weights  # noqa: E402

HEAD = "model.layers.4.shared_head.head.weight"


def run_module(capsys, args: dict) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        mtp_weights.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def ckpt(tmp_path: Path) -> Checkpoint:
    return make_checkpoint(tmp_path / "GLM-5")


def test_module_applies_then_is_idempotent(capsys, ckpt: Checkpoint) -> None:
    first = run_module(capsys, {"path": str(ckpt.path), "_ansible_diff": True})
    assert first["changed"] is True and HEAD in first["diff"]["after"]
    assert tensor_bytes(ckpt.path / "mtp-others.safetensors", HEAD) == tensor_bytes(ckpt.shard_of("lm_head.weight"), "lm_head.weight")
    second = run_module(capsys, {"path": str(ckpt.path)})
    assert second["changed"] is False and "diff" not in second


def test_module_check_mode(capsys, ckpt: Checkpoint) -> None:
    before = ckpt.index_path.read_bytes()
    result = run_module(capsys, {"path": str(ckpt.path), "_ansible_check_mode": True})
    assert result["changed"] is True
    assert ckpt.index_path.read_bytes() == before and not (ckpt.path / "mtp-others.safetensors").exists()


@pytest.mark.parametrize("args,message", [
    ({"chunk_size": 0}, "chunk_size must be a positive number of bytes, got 0"),
    ({"layer": 0}, "layer must be a positive integer, got 0"),
    ({"index_name": "other.json"}, "index not found: .*other.json"),
])
def test_module_rejects_bad_options(capsys, ckpt: Checkpoint, args: dict, message: str) -> None:
    result = run_module(capsys, dict(args, path=str(ckpt.path)))
    assert result["failed"] is True and re.search(message, result["msg"])


def test_module_failure_names_shard_and_tensor(capsys, ckpt: Checkpoint) -> None:
    ckpt.shard_of("lm_head.weight").unlink()
    result = run_module(capsys, {"path": str(ckpt.path)})
    assert result["failed"] is True
    assert (result["shard"], result["tensor"]) == ("model-00003-of-00003.safetensors", "lm_head.weight")


def test_cli_check_apply_idempotent_check_idempotent_apply(ckpt: Checkpoint) -> None:
    path = "path=%s/" % ckpt.path
    status, result = run_cli("ascend_ops.vllm.mtp_weights", path, "--check", "--diff")
    assert (status, result["changed"]) == ("CHANGED", True)
    assert '+"%s": "mtp-others.safetensors"' % HEAD in result["_stdout"]
    assert not (ckpt.path / "mtp-others.safetensors").exists()

    status, result = run_cli("ascend_ops.vllm.mtp_weights", path, "--diff")
    assert (status, result["changed"]) == ("CHANGED", True)
    assert json.loads(ckpt.index_path.read_text())["weight_map"][HEAD] == "mtp-others.safetensors"
    mtimes = {p.name: p.stat().st_mtime_ns for p in ckpt.path.iterdir()}

    for flags in (("--check", "--diff"), ("--diff",)):
        status, result = run_cli("ascend_ops.vllm.mtp_weights", path, *flags)
        assert (status, result["changed"]) == ("SUCCESS", False), flags
        assert "mtp-others.safetensors\"\n" not in result["_stdout"].split("=>")[0]
    assert {p.name: p.stat().st_mtime_ns for p in ckpt.path.iterdir()} == mtimes

    status, result = run_cli("ascend_ops.vllm.weights_verify", "path=%s require_mtp=true" % ckpt.path, "--check")
    assert (status, result["changed"], result["shard_count"]) == ("SUCCESS", False, 4)


def test_cli_failure_is_reported(ckpt: Checkpoint) -> None:
    (ckpt.path / "config.json").unlink()
    status, result = run_cli("ascend_ops.vllm.mtp_weights", "path=%s" % ckpt.path)
    assert status == "FAILED" and "config not found: %s/config.json" % ckpt.path in result["msg"]
