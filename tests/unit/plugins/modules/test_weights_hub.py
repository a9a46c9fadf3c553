"""The model_weights role with hub sources, run for real on localhost against fake `modelscope` / `hf` clients
that record their argv and environment and write a synthetic checkpoint (no hub is ever contacted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import read_marker
from ansible_collections.ascend_ops.vllm.plugins.modules import weights_hub

REPO = Path(__file__).resolve().parents[4]
TOKEN = "tok-9f3c2a-never-in-logs"
MARKER = ".ascend-ops-weights-20260101T000000000000-node0"

FAKE_CLIENT = """#!{python}
import json, os, sys
sys.path.insert(0, {helpers!r})
from pathlib import Path
from weights_helpers import make_checkpoint
with open({record!r}, "a") as fp:
    fp.write(json.dumps({{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items() if "TOKEN" in k}}}}) + "\\n")
flag = "--local_dir" if "--local_dir" in sys.argv else "--local-dir"
make_checkpoint(Path(sys.argv[sys.argv.index(flag) + 1]))
"""

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: ascend_ops.vllm.model_weights
"""


def run_role(tmp_path: Path, source: str, client: Path, dest: Path) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    extra = {"model_weights_source": source, "model_weights_storage": "shared", "model_weights_path": str(dest),
             "model_weights_repo_id": "vllm-ascend/GLM5-w8a8", "model_weights_token": TOKEN,
             "model_weights_modelscope_bin": str(client), "model_weights_huggingface_bin": str(client),
             "model_weights_mtp_adjust": source == "huggingface", "model_weights_expected_bytes": 100000,
             "model_weights_progress_steps": [100], "model_weights_poll_interval": 1,
             "ansible_python_interpreter": sys.executable}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-vvv",
                           str(tmp_path / "play.yml"), "-e", json.dumps(extra)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("source,argv,env_name", [
    ("modelscope", ["download", "--model", "vllm-ascend/GLM5-w8a8", "--local_dir"], "MODELSCOPE_API_TOKEN"),
    ("huggingface", ["download", "vllm-ascend/GLM5-w8a8", "--local-dir"], "HF_TOKEN"),
])
def test_hub_download_argv_env_and_no_token_in_logs(tmp_path: Path, source: str, argv: list[str], env_name: str) -> None:
    record = tmp_path / "calls.jsonl"
    client = tmp_path / "fake-client"
    client.write_text(FAKE_CLIENT.format(python=sys.executable, helpers=str(REPO / "tests" / "unit"), record=str(record)))
    client.chmod(0o755)
    dest = tmp_path / "weights"
    first = run_role(tmp_path, source, client, dest)
    assert first.returncode == 0, first.stdout[-3000:]
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls == [{"argv": argv + [str(dest)], "env": {env_name: TOKEN}}]
    assert TOKEN not in first.stdout + first.stderr, "the token leaked into ansible output at -vvv"
    index = json.loads((dest / "model.safetensors.index.json").read_text())
    assert ("model.layers.4.embed_tokens.weight" in index["weight_map"]) == (source == "huggingface")
    second = run_role(tmp_path, source, client, dest)
    assert second.returncode == 0, second.stdout[-3000:]
    assert len(record.read_text().splitlines()) == 1, "a complete copy must not be downloaded again"
    assert "changed=0" in second.stdout


def test_path_source_without_weights_fails_naming_the_path(tmp_path: Path) -> None:
    proc = run_role(tmp_path, "path", tmp_path / "unused", tmp_path / "nowhere")
    assert proc.returncode != 0
    assert "no host holds a verified checkpoint at %s" % (tmp_path / "nowhere") in proc.stdout


@pytest.mark.parametrize("body,expect", [
    ("", None),
    ("sys.exit(3)", "{client} exited 3 while downloading vllm-ascend/GLM5-w8a8 into {dest}"),
    ("import shutil; shutil.rmtree(sys.argv[-1])",
     "{client} downloaded vllm-ascend/GLM5-w8a8 into {dest} but the checkpoint is incomplete: "),
], ids=["ok", "client-fails", "incomplete"])
def test_hub_completion_marker(capsys, tmp_path: Path, body: str, expect: str) -> None:
    """In-process: the marker that hosts pulling from this one wait for says ok, or failed with the module's message."""
    client = tmp_path / "modelscope"
    client.write_text(FAKE_CLIENT.format(python=sys.executable, helpers=str(REPO / "tests" / "unit"),
                                         record=str(tmp_path / "calls.jsonl")) + body + "\n")
    client.chmod(0o755)
    dest = tmp_path / "weights"
    args = {"source": "modelscope", "repo_id": "vllm-ascend/GLM5-w8a8", "dest": str(dest), "executable": str(client),
            "done_marker": MARKER}
    with patch_module_args(args), pytest.raises(SystemExit):
        weights_hub.main()
    result = json.loads(capsys.readouterr().out)
    if expect is None:
        assert result["changed"] and not result.get("failed") and read_marker(str(dest), MARKER) == ""
    else:
        assert result["failed"] and result["msg"].startswith(expect.format(client=client, dest=dest))
        assert read_marker(str(dest), MARKER) == result["msg"]
