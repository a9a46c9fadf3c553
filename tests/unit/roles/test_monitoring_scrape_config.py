"""The scrape configuration and alert rules rendered from a real plan (inventories/sim_xpyd) by ansible-playbook."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from role_stack import ROOT

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars: {{vllm_discover_nic: false, vllm_require_nic: all}}
  tasks:
    - {{ansible.builtin.import_role: {{name: ascend_ops.vllm.vllm}}}}
    - {{ansible.builtin.include_vars: {{file: {roles}/monitoring/defaults/main.yml}}}}
    - {{ansible.builtin.include_vars: {{file: {roles}/monitoring/vars/main.yml}}}}
    - ansible.builtin.template: {{src: {roles}/monitoring/templates/prometheus.yml.j2, dest: {out}/prometheus.yml, mode: "0644"}}
      vars: {{groups: {{monitoring: [sim-proxy]}}}}
    - ansible.builtin.template: {{src: {roles}/monitoring/templates/vllm-ascend-alerts.yml.j2, dest: {out}/rules.yml, mode: "0644"}}
    - ansible.builtin.copy: {{content: "{{{{ vllm_plan | to_json }}}}", dest: {out}/plan.json, mode: "0644"}}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    book = out / "render.yml"
    book.write_text(PLAYBOOK.format(roles=ROOT / "roles", out=out))
    run = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), str(book), "-i",
                          str(ROOT / "inventories/sim_xpyd/hosts.yml")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:]
    return out


def test_one_vllm_target_per_planned_api_server_with_plan_labels(rendered: Path) -> None:
    plan = json.loads((rendered / "plan.json").read_text())
    jobs = {j["job_name"]: j for j in yaml.safe_load((rendered / "prometheus.yml").read_text())["scrape_configs"]}
    got = {c["targets"][0]: c["labels"] for c in jobs["vllm"]["static_configs"]}
    want = {f"{a['address']}:{a['port']}": {"role": inst["role"], "instance": inst["name"],
                                            "rank": ",".join(map(str, a["ranks"])), "host": a["host"],
                                            "unit": a["unit"]}
            for inst in plan["instances"].values() for a in inst["api_servers"]}
    assert got == want and len(got) == 10
    assert jobs["proxy"]["static_configs"][0]["targets"] == [f"{plan['proxy']['address']}:{plan['proxy']['port']}"]
    nodes = sorted(c["labels"]["host"] for c in jobs["node"]["static_configs"])
    assert nodes == sorted([*plan["hosts"], "sim-proxy"])
    assert "npu" not in jobs


def test_alert_rules_parse_and_name_the_planned_labels(rendered: Path) -> None:
    rules = yaml.safe_load((rendered / "rules.yml").read_text())["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert by_name["VllmEngineDown"]["expr"] == 'up{job="vllm"} == 0'
    assert "$labels.rank" in by_name["VllmEngineDown"]["annotations"]["summary"]
    assert "> 0.95" in by_name["VllmKvCacheHigh"]["expr"]
    assert {"ProxyDown", "ProxyBackendErrors", "VllmQueueGrowing"} <= set(by_name)
