# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of dp_plan: gather every planned host's vllm_* variables
from the inventory (so the plan covers the whole cluster even under --limit)
and run the pure planner."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import PlanError, plan, resolve_profile, topology_table

PLANNED_GROUPS = ("prefill", "decode", "engine", "proxy")
PROXY_VARS = {
    "backend": "vllm_proxy_backend",
    "port": "vllm_proxy_port",
    "bind": "vllm_proxy_bind",
    "python": "vllm_proxy_python",
    "example_script": "vllm_proxy_example_script",
    "health_interval": "vllm_proxy_health_interval",
    "failure_threshold": "vllm_proxy_failure_threshold",
    "max_retries": "vllm_proxy_max_retries",
    "fallback": "vllm_proxy_fallback",
    "vllm_router_bin": "vllm_proxy_router_bin",
    "router_policy": "vllm_proxy_router_policy",
    "ascend_pd_proxy_bin": "vllm_proxy_bin",
}


class ActionModule(ActionBase):
    """Build the planner input from hostvars and return the plan."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("hosts", "proxy", "require_nic"))

    def _var(self, hostvars, task_vars, host: str, name: str):
        """A host's value of a variable; role defaults apply when the inventory has none."""
        host_vars = hostvars[host]
        if name in host_vars:
            return host_vars[name]
        return self._templar.template(task_vars.get(name))

    def _host_input(self, hostvars, task_vars, host: str, groups: dict) -> dict:
        def var(name):
            return self._var(hostvars, task_vars, host, name)

        member_of = [g for g in PLANNED_GROUPS if host in groups.get(g, [])]
        variant = var("vllm_model_variant")
        models = var("vllm_models") or {}
        hardware_name = var("vllm_hardware")
        hardware_profiles = var("vllm_hardware_profiles") or {}
        if variant not in models:
            raise AnsibleActionFail(f"host {host}: vllm_model_variant {variant!r} is not in vllm_models ({', '.join(sorted(models))})")
        if hardware_name not in hardware_profiles:
            raise AnsibleActionFail(f"host {host}: vllm_hardware {hardware_name!r} is not in vllm_hardware_profiles ({', '.join(sorted(hardware_profiles))})")
        profile = {}
        engine_host = any(g in member_of for g in ("prefill", "decode", "engine"))
        if engine_host:
            profile_name = var("vllm_profile")
            if not profile_name:
                raise AnsibleActionFail(f"host {host}: vllm_profile is empty; name one of vllm_deployment_profiles in group_vars")
            try:
                profile = resolve_profile(var("vllm_deployment_profiles") or {}, profile_name)
            except PlanError as exc:
                raise AnsibleActionFail(f"host {host}: " + "; ".join(exc.errors)) from exc
        model = dict(models[variant])
        rank_start = var("vllm_dp_rank_start")
        return {
            "name": host,
            "groups": member_of,
            "address": var("vllm_cluster_address") or hostvars[host].get("ansible_host") or host,
            "nic": var("vllm_nic_name") or None,
            "instance": var("vllm_instance") or None,
            "hardware": dict(hardware_profiles[hardware_name], key=hardware_name),
            "npu_count": int(var("vllm_npu_count") or 0) or None,
            "tp_size": _int(var("vllm_tp_size")),
            "dp_size_local": _int(var("vllm_dp_size_local")),
            "dp_rank_start": None if rank_start in (None, -1, "-1", "") else _int(rank_start),
            "dp_mode": var("vllm_dp_mode"),
            "api_port": _int(var("vllm_api_port")),
            "dp_rpc_port": _int(var("vllm_dp_rpc_port")),
            "kv_port": _int(var("vllm_kv_port")),
            "model": model,
            "model_path": (var("vllm_model_path") or model.get("path", "")).rstrip("/") or "/",
            "profile": profile,
            "env_overrides": var("vllm_env_overrides") or {},
            "serve_overrides": var("vllm_serve_overrides") or {},
            "additional_config_overrides": var("vllm_additional_config_overrides") or {},
            "settings": var("vllm_settings") or {},
        }

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        hosts = args.get("hosts")
        proxy = args.get("proxy")
        if hosts is None:
            hostvars = task_vars["hostvars"]
            groups = task_vars["groups"]
            names: list[str] = []
            for group in PLANNED_GROUPS:
                for host in groups.get(group, []):
                    if host not in names:
                        names.append(host)
            hosts = [self._host_input(hostvars, task_vars, h, groups) for h in names]
            if proxy is None and groups.get("proxy"):
                proxy_host = groups["proxy"][0]
                proxy = {key: self._var(hostvars, task_vars, proxy_host, var) for key, var in PROXY_VARS.items()}
                proxy = {key: value for key, value in proxy.items() if value is not None}
        version = {"name": self._templar.template(task_vars.get("vllm_ascend_version")),
                   "rules": self._templar.template(task_vars.get("vllm_ascend_versions"))}
        try:
            planned = plan({"hosts": hosts, "proxy": proxy, "require_nic": args.get("require_nic"), "version": version})
        except PlanError as exc:
            result.update(failed=True, msg="plan rejected:\n" + "\n".join(exc.errors), errors=exc.errors)
            return result
        for warning in planned["warnings"]:
            self._display.warning(warning)
        result.update(changed=False, plan=planned, table=topology_table(planned))
        return result


def _int(value):
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return value
