"""render.yml validates the whole inventory before it writes anything.

Runs the real `ansible-playbook playbooks/render.yml` from the checkout on copies
of the seed's 1P1D inventory: a bad topology fails in the plan task with one
line per problem and leaves the render directory untouched; `--limit` does not
shrink the plan.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
SEED_INVENTORY = REPO / "inventories" / "a3_1p1d_w8a8"
ENGINES = ["prefill0", "prefill1", "decode0", "decode1", "decode2", "decode3"]


def inventory_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "inventory"
    shutil.copytree(SEED_INVENTORY, dest)
    return dest


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def render(inventory: Path, dest: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "playbooks/render.yml", "-i", str(inventory / "hosts.yml"),
         "-e", f"render_dir={dest}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


def plan_failure(proc: subprocess.CompletedProcess) -> list[str]:
    """The error lines of the failed plan task (its JSON result), after asserting nothing else ran."""
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    fatal = [ln for ln in proc.stdout.splitlines() if ln.startswith("fatal: [localhost]: FAILED! => ")]
    assert len(fatal) == 1, proc.stdout[-3000:]
    result = json.loads(fatal[0].partition(" => ")[2])
    # Only the role's argument validation ran before the plan; nothing after it.
    assert "ok=1 " in proc.stdout and "changed=0" in proc.stdout and "failed=1" in proc.stdout
    lines = result["msg"].splitlines()
    assert lines[0] == "plan rejected:" and lines[1:] == result["errors"]
    return lines[1:]


def test_oversubscribed_decode_fails_before_writing(tmp_path):
    inventory = inventory_copy(tmp_path)
    edit_yaml(inventory / "group_vars" / "decode.yml", lambda d: d.update(vllm_dp_size_local=5))
    dest = tmp_path / "rendered"
    proc = render(inventory, dest)
    errors = plan_failure(proc)
    about_decode0 = [e for e in errors if "decode0" in e]
    assert len(about_decode0) == 1
    line = about_decode0[0]
    assert line == ("host decode0 (decode): vllm_tp_size 4 x vllm_dp_size_local 5 = 20 NPUs > 16 NPUs of "
                    "hardware Atlas 800 A3; lower one of them")
    # The human-readable output also carries it on one line, once.
    text = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "decode0" in ln and not ln.startswith("fatal:")]
    assert text == [line]
    assert not dest.exists()


def test_proxy_port_clashing_with_api_port_fails(tmp_path):
    inventory = inventory_copy(tmp_path)

    def proxy_on_decode0(data):
        data["all"]["children"]["proxy"]["hosts"] = {"decode0": None}
    edit_yaml(inventory / "hosts.yml", proxy_on_decode0)
    edit_yaml(inventory / "group_vars" / "all.yml", lambda d: d.update(vllm_proxy_port=6722))
    dest = tmp_path / "rendered"
    errors = plan_failure(render(inventory, dest))
    assert errors == ["host decode0: port 6722 is planned twice (API port of vllm-decode-r1; proxy port); "
                      "move one of the base ports (F6)"]
    assert not dest.exists()


def test_limit_still_plans_the_whole_cluster(tmp_path):
    inventory = inventory_copy(tmp_path)
    # One rank of tp 16 per decode host keeps the render short; the cluster is still 6 engines + proxy.
    edit_yaml(inventory / "group_vars" / "decode.yml", lambda d: d.update(vllm_tp_size=16, vllm_dp_size_local=1))
    dest = tmp_path / "rendered"
    proc = render(inventory, dest, "--limit", "localhost,decode1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    planned = json.loads((dest / "plan.json").read_text())
    assert list(planned["hosts"]) == ENGINES
    assert planned["proxy"]["host"] == "proxy0"
    assert [planned["instances"][i]["hosts"] for i in ("prefill", "decode")] == [ENGINES[:2], ENGINES[2:]]
    assert sorted(p.name for p in dest.iterdir()) == sorted(ENGINES + ["plan.json", "proxy0"])
    assert sorted(p.name for p in (dest / "decode3").iterdir()) == ["vllm-decode-r3.env", "vllm-decode-r3.sh"]
    assert [(s["host"], s["port"]) for s in planned["proxy"]["decoders"]] == [(h, 6721) for h in ENGINES[2:]]
