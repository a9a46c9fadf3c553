"""The weights_progress module against async job result files written by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.ascend_ops.vllm.plugins.modules import weights_progress


def run_module(capsys, args: dict) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        weights_progress.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def copy_dir(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    path.mkdir()
    (path / "model-00001-of-00001.safetensors").write_bytes(b"x" * 1000)
    return path


def test_a_step_below_100_returns_once_reached(capsys, copy_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "async").mkdir()
    (tmp_path / "async" / "j1").write_text(json.dumps({"started": 1, "finished": 0}))
    result = run_module(capsys, {"path": str(copy_dir), "expected_bytes": 1000, "jid": "j1",
                                 "async_dir": str(tmp_path / "async"), "until_percent": 50, "wait": 30})
    assert (result["percent"], result["finished"], result["bytes"]) == (100.0, False, 1000)


def test_the_100_step_waits_for_the_job_and_not_longer(capsys, copy_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "async").mkdir()
    (tmp_path / "async" / "j1").write_text(json.dumps({"started": 1, "finished": 0}))
    start = time.monotonic()
    result = run_module(capsys, {"path": str(copy_dir), "expected_bytes": 1000, "jid": "j1", "interval": 0.05,
                                 "async_dir": str(tmp_path / "async"), "until_percent": 100, "wait": 1})
    assert time.monotonic() - start >= 1 and result["finished"] is False, "all bytes but the job still runs"
    (tmp_path / "async" / "j1").write_text(json.dumps({"changed": True, "finished": 1}))
    result = run_module(capsys, {"path": str(copy_dir), "expected_bytes": 1000, "jid": "j1",
                                 "async_dir": str(tmp_path / "async"), "until_percent": 100, "wait": 30})
    assert result["finished"] is True and result["msg"].endswith("(100.0%), done")


def test_a_failed_job_fails_the_report_with_its_message(capsys, copy_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "async").mkdir()
    (tmp_path / "async" / "j1").write_text(json.dumps({"failed": True, "finished": 1,
                                                       "msg": "copy of /c from sim-p0 failed: no new file"}))
    result = run_module(capsys, {"path": str(copy_dir), "expected_bytes": 4000, "jid": "j1",
                                 "async_dir": str(tmp_path / "async"), "until_percent": 25, "wait": 30})
    assert result["failed"] and result["percent"] == 25.0
    assert result["msg"] == "the transfer into %s failed: copy of /c from sim-p0 failed: no new file" % copy_dir
