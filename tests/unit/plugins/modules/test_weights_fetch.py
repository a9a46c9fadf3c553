"""The weights_fetch module's completion marker (what in-cluster copies wait for), in-process against a loopback
mirror: ok after a complete, checked download; failed with the reason when the mirror lacks a shard."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(REPO / "tests" / "unit"))

from weights_helpers import make_checkpoint, serve_directory  # noqa: E402

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.modules import weights_fetch  # noqa: E402

MARKER = ".ascend-ops-weights-20260101T000000000000-node0"


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "mirror"
    make_checkpoint(root / "ck", filler_shards=2, filler_bytes=65536)
    with serve_directory(root) as base:
        yield root / "ck", base + "ck/"


def run_module(capsys, args: dict) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        weights_fetch.main()
    return json.loads(capsys.readouterr().out)


def test_marker_ok_after_a_checked_download_and_stale_markers_go(capsys, mirror, tmp_path: Path) -> None:
    src, url = mirror
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / ".ascend-ops-weights-19990101T000000000000-node0.done").write_text("ok\n")  # an earlier run's
    result = run_module(capsys, {"url": url, "dest": str(dest), "done_marker": MARKER})
    assert result["changed"] and not result.get("failed")
    assert (dest / (MARKER + ".done")).read_text() == "ok\n"
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == sorted(p.name for p in src.iterdir())
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == [MARKER + ".done"]


def test_marker_failed_names_the_missing_shard(capsys, mirror, tmp_path: Path) -> None:
    src, url = mirror
    (src / "model-00002-of-00004.safetensors").unlink()
    dest = tmp_path / "dest"
    result = run_module(capsys, {"url": url, "dest": str(dest), "done_marker": MARKER})
    assert result["failed"] and "model-00002-of-00004.safetensors is missing on the mirror" in result["msg"]
    text = (dest / (MARKER + ".done")).read_text()
    assert text.startswith("failed: weights_fetch into %s:" % dest) and "model-00002-of-00004.safetensors" in text


def test_bad_marker_name_is_refused(capsys, mirror, tmp_path: Path) -> None:
    result = run_module(capsys, {"url": mirror[1], "dest": str(tmp_path / "d"), "done_marker": "../escape"})
    assert result["failed"] and "must be a plain file name" in result["msg"]
    assert not (tmp_path / "d").exists()
