"""Unit tests of the vllm-ascend version rules (plugins/module_utils/_versions.py) and of their call
site in the planner, on the data the collection ships (roles/vllm/defaults/main/versions.yml)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.ascend_ops.vllm.plugins.module_utils._topology import PlanError, plan, resolve_profile
from ansible_collections.ascend_ops.vllm.plugins.module_utils._versions import (
    VersionError, context, env_to_key, family_of, key_to_env, lint_launch, migrate_profile, validate,
)

DEFAULTS = Path(__file__).resolve().parents[4] / "roles" / "vllm" / "defaults" / "main"
RULES = yaml.safe_load((DEFAULTS / "versions.yml").read_text())["vllm_ascend_versions"]
SEED_VERSION = yaml.safe_load((DEFAULTS / "versions.yml").read_text())["vllm_ascend_version"]
HARDWARE = yaml.safe_load((DEFAULTS / "hardware.yml").read_text())["vllm_hardware_profiles"]
PROFILES = yaml.safe_load((DEFAULTS / "profiles.yml").read_text())["vllm_deployment_profiles"]


def pd_spec(version: str | None, **decode_keys) -> dict:
    """1P1D on A3 with the seed's PD profiles, as the action plugin builds it."""
    def host(name, group, profile, tp, local, port, kv, **keys):
        spec = {"name": name, "groups": [group], "address": f"10.0.0.{len(name)}{port % 10}", "nic": "eth0",
                "instance": None, "hardware": dict(HARDWARE["a3"], key="a3"), "npu_count": None, "tp_size": tp,
                "dp_size_local": local, "dp_rank_start": None, "dp_mode": "external", "api_port": port,
                "dp_rpc_port": 12890, "kv_port": kv, "model": {"name": "tiny", "quantization": "ascend", "weights_gib": 1}, "model_path": "/m",
                "profile": resolve_profile(PROFILES, profile), "env_overrides": {}, "serve_overrides": {},
                "additional_config_overrides": {}, "settings": {}}
        spec.update(keys)
        return spec
    hosts = [host("p0", "prefill", "pd_a3_w8a8_prefill", 16, 1, 8000, 40000),
             host("d0", "decode", "pd_a3_w8a8_decode", 1, 16, 8100, 41000, **decode_keys),
             {"name": "px", "groups": ["proxy"], "address": "10.0.0.99"}]
    return {"hosts": hosts, "proxy": {}, "version": {"name": version, "rules": RULES} if version else None}


def launch(planned: dict, host: str) -> dict:
    return planned["hosts"][host]["launches"][0]


def additional(argv: list[str]) -> dict:
    import json
    return json.loads(argv[argv.index("--additional-config") + 1])


def test_shipped_rules_are_valid_and_cover_the_ten_migrated_variables():
    assert validate(RULES) == []
    envs = {s["env"] for s in RULES["settings"].values()}
    assert len(envs) == 10 and "VLLM_ASCEND_ENABLE_FUSED_MC2" in envs and "MSMONITOR_USE_DAEMON" in envs
    assert SEED_VERSION == "v0.20.2rc1"


@pytest.mark.parametrize("version, family", [
    ("v0.20.2rc1", "v0.20"), ("v0.23.0", "v0.23"), ("v0.23.0rc1", "v0.23"), ("v0.25.1rc1", "v0.23"), ("main", "main"),
])
def test_family_of(version, family):
    assert family_of(version, RULES) == family


@pytest.mark.parametrize("version", ["v0.19.0", "0.23.0", "v1.0"])
def test_unknown_version_is_rejected_with_the_supported_list(version):
    with pytest.raises(VersionError) as exc:
        context(version, RULES)
    assert f"vllm_ascend_version {version!r} is not a supported" in exc.value.errors[0]
    assert "v0.20." in exc.value.errors[0] and "main" in exc.value.errors[0]


def test_empty_version_is_rejected():
    with pytest.raises(VersionError, match="vllm_ascend_version is empty"):
        context("", RULES)


def test_broken_rules_data_is_reported():
    rules = copy.deepcopy(RULES)
    rules["settings"]["fused_mc2"]["families"]["v0.23"]["read"] = "sometimes"
    del rules["role_rules"]["balance_scheduling"]["families"]["main"]
    problems = validate(rules)
    assert any("fused_mc2.families.v0.23.read = 'sometimes'" in p for p in problems)
    assert any("balance_scheduling.families.main.prefill" in p for p in problems)


@pytest.mark.parametrize("value, kind, key, env", [
    ("1", "bool", True, "1"), ("0", "bool", False, "0"), ("true", "bool", True, "1"), ("2", "int", 2, "2"),
])
def test_value_conversions(value, kind, key, env):
    assert env_to_key(value, kind) == key
    assert key_to_env(key, kind) == env


def test_seed_version_leaves_every_profile_untouched():
    ctx = context(SEED_VERSION, RULES)
    for name in PROFILES:
        profile = resolve_profile(PROFILES, name)
        for role in ("prefill", "decode", "engine"):
            migrated, notes = migrate_profile(profile, ctx, role)
            assert notes == [] and migrated["serve"] == profile["serve"], name
            assert list(migrated.get("env") or {}) == list(profile.get("env") or {}), name


def test_fused_mc2_intent_renders_per_version():
    """The same intent ("fused MC2 on decode") in the form each version reads."""
    base = resolve_profile(PROFILES, "base")
    want = {"v0.20.2rc1": ("env", "1"), "v0.23.0": ("key", 1), "main": ("key", 1)}
    for version, (form, value) in want.items():
        migrated, _notes = migrate_profile(base, context(version, RULES), "decode", {"fused_mc2": 1})
        add = migrated["serve"].get("additional-config") or {}
        if form == "env":
            assert migrated["env"]["VLLM_ASCEND_ENABLE_FUSED_MC2"] == value and "enable_fused_mc2" not in add
        else:
            assert add["enable_fused_mc2"] == value and "VLLM_ASCEND_ENABLE_FUSED_MC2" not in migrated["env"]


def test_unknown_intent_is_rejected():
    with pytest.raises(VersionError, match="vllm_settings.fused_mc3 is not a known setting"):
        migrate_profile({}, context("main", RULES), "decode", {"fused_mc3": 1})


def test_key_form_goes_back_to_env_on_the_seed_version():
    profile = {"env": {}, "serve": {"additional-config": {"enable_mlapo": True}}}
    migrated, notes = migrate_profile(profile, context(SEED_VERSION, RULES), "decode")
    assert migrated["env"] == {"VLLM_ASCEND_ENABLE_MLAPO": "1"} and migrated["serve"]["additional-config"] == {}
    assert notes == ["mlapo: additional_config enable_mlapo -> env VLLM_ASCEND_ENABLE_MLAPO"]


@pytest.mark.parametrize("version", ["v0.20.2rc1", "v0.23.0", "main"])
def test_pd_plan_renders_for_every_version_without_lint_errors(version):
    planned = plan(pd_spec(version))
    assert planned["version"]["name"] == version
    decode = launch(planned, "d0")
    add = additional(decode["argv"])
    if version == SEED_VERSION:
        assert decode["env"]["VLLM_ASCEND_ENABLE_FUSED_MC2"] == "1" and "enable_fused_mc2" not in add
        assert "version" in planned and planned["version"]["notes"] == {}
    else:
        assert "VLLM_ASCEND_ENABLE_FUSED_MC2" not in decode["env"] and add["enable_fused_mc2"] == 1
        assert "recompute_scheduler_enable" not in additional(launch(planned, "p0")["argv"])
    assert add["recompute_scheduler_enable"] is True


def test_stale_env_override_is_rejected_naming_version_and_replacement():
    """Done criterion: a seed-style variable the target no longer reads fails the plan, replacement named."""
    with pytest.raises(PlanError) as exc:
        plan(pd_spec("main", env_overrides={"VLLM_ASCEND_ENABLE_MLAPO": "1"}))
    line = next(e for e in exc.value.errors if "VLLM_ASCEND_ENABLE_MLAPO" in e)
    assert line.startswith("host d0 (decode): env VLLM_ASCEND_ENABLE_MLAPO is no longer read by vllm-ascend main")
    assert '{"enable_mlapo": true}' in line


def test_removed_flashcomm1_env_on_main_is_rejected_but_accepted_on_v023():
    with pytest.raises(PlanError, match="VLLM_ASCEND_ENABLE_FLASHCOMM1 is no longer read by vllm-ascend main"):
        plan(pd_spec("main", env_overrides={"VLLM_ASCEND_ENABLE_FLASHCOMM1": "1"}))
    planned = plan(pd_spec("v0.23.0", env_overrides={"VLLM_ASCEND_ENABLE_FLASHCOMM1": "1"}))
    assert launch(planned, "d0")["env"]["VLLM_ASCEND_ENABLE_FLASHCOMM1"] == "1"


def test_deprecated_fallback_is_a_warning():
    planned = plan(pd_spec("v0.23.0", env_overrides={"VLLM_ASCEND_ENABLE_FUSED_MC2": "1"}))
    assert any("VLLM_ASCEND_ENABLE_FUSED_MC2 is deprecated in vllm-ascend v0.23.0" in w and "enable_fused_mc2" in w
               for w in planned["warnings"])


def test_config_key_on_the_seed_version_is_rejected():
    with pytest.raises(PlanError, match=r"additional_config enable_fused_mc2 is not read by vllm-ascend v0.20.2rc1.*"
                                        r"set env VLLM_ASCEND_ENABLE_FUSED_MC2"):
        plan(pd_spec(SEED_VERSION, additional_config_overrides={"enable_fused_mc2": 1}))


@pytest.mark.parametrize("version, rejected", [("v0.20.2rc1", False), ("v0.23.0", True), ("main", True)])
def test_recompute_scheduler_on_prefill_per_version(version, rejected):
    errors: list[str] = []
    warnings: list[str] = []
    lint_launch("host p0 (prefill)", "prefill", {}, {"recompute_scheduler_enable": True},
                context(version, RULES), errors, warnings)
    assert bool(errors) == rejected
    if rejected:
        assert "recompute_scheduler_enable is ignored on prefill" in errors[0] and version in errors[0]


def test_balance_scheduling_on_pd_is_rejected_in_its_new_form_too():
    with pytest.raises(PlanError, match="balance scheduling"):
        plan(pd_spec("main", settings={"balance_scheduling": True}))


def test_without_rules_the_planner_is_unchanged():
    assert "version" not in plan(pd_spec(None))
