# -*- coding: utf-8 -*-
# Copyright: ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Version rules of vllm-ascend: which settings a version reads as environment
variables, which as ``--additional-config`` keys, which are gone.

Pure standard library. ``context(name, rules)`` resolves a version to its
family; ``migrate_profile`` renders a deployment profile (written in any form)
in the form that version reads; ``lint_launch`` rejects a rendered launch that
still carries a setting the version ignores, has removed or reads under
another name. The data is ``vllm_ascend_versions`` (roles/vllm/defaults/main/versions.yml).
"""

from __future__ import annotations

import copy

READS = ("env", "key", "key_env_fallback", "removed")
ROLE_LEVELS = ("ok", "warn", "ignored", "error")


class VersionError(Exception):
    """The version or the rules data is unusable; ``errors`` holds one line each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def family_of(name: str, rules: dict) -> str:
    """The family whose prefix the version starts with (first match wins)."""
    for family, spec in (rules.get("families") or {}).items():
        for prefix in spec.get("prefixes") or []:
            if name == prefix or name.startswith(prefix):
                return family
    known = ", ".join(p for spec in (rules.get("families") or {}).values() for p in spec.get("prefixes") or [])
    raise VersionError([f"vllm_ascend_version {name!r} is not a supported vllm-ascend version; "
                        f"supported: {known}; add a family to vllm_ascend_versions or pick one of those"])


def validate(rules: dict) -> list[str]:
    """Problems in the rules data itself (a family or read value missing or unknown)."""
    problems: list[str] = []
    families = list(rules.get("families") or {})
    if not families:
        problems.append("vllm_ascend_versions.families is empty")
    for name, setting in (rules.get("settings") or {}).items():
        for field in ("env", "key", "type"):
            if not setting.get(field):
                problems.append(f"vllm_ascend_versions.settings.{name}: '{field}' is missing")
        if setting.get("type") not in (None, "bool", "int"):
            problems.append(f"vllm_ascend_versions.settings.{name}: type {setting.get('type')!r}, expected bool or int")
        for family in families:
            read = ((setting.get("families") or {}).get(family) or {}).get("read")
            if read not in READS:
                problems.append(f"vllm_ascend_versions.settings.{name}.families.{family}.read = {read!r}, "
                                f"expected one of {', '.join(READS)}")
    for name, rule in (rules.get("role_rules") or {}).items():
        for family in families:
            levels = (rule.get("families") or {}).get(family) or {}
            for role in ("prefill", "decode", "engine"):
                if levels.get(role) not in ROLE_LEVELS:
                    problems.append(f"vllm_ascend_versions.role_rules.{name}.families.{family}.{role} = "
                                    f"{levels.get(role)!r}, expected one of {', '.join(ROLE_LEVELS)}")
    return problems


def context(name: str | None, rules: dict | None) -> dict | None:
    """Resolve a version: {name, family, rules}; None when no rules are given (planner unit tests)."""
    if not rules:
        return None
    problems = validate(rules)
    if problems:
        raise VersionError(problems)
    name = str(name or "").strip()
    if not name:
        raise VersionError(["vllm_ascend_version is empty; name the image version, e.g. v0.20.2rc1"])
    return {"name": name, "family": family_of(name, rules), "rules": rules}


def _read(ctx: dict, setting: dict) -> str:
    return setting["families"][ctx["family"]]["read"]


def env_to_key(value, kind: str):
    """An environment string as the additional_config value of a setting."""
    text = str(value).strip()
    if kind == "bool":
        return text.lower() not in ("", "0", "false", "no", "off")
    return int(text)


def key_to_env(value, kind: str) -> str:
    """An additional_config value as the environment string of a setting."""
    if kind == "bool" or isinstance(value, bool):
        return "1" if value else "0"
    return str(int(value))


def _additional(profile: dict) -> dict:
    if not isinstance(profile.get("serve"), dict):
        profile["serve"] = {}
    serve = profile["serve"]
    if not isinstance(serve.get("additional-config"), dict):
        serve["additional-config"] = {}
    return serve["additional-config"]


def _version_label(ctx: dict) -> str:
    return f"vllm-ascend {ctx['name']} (family {ctx['family']})"


def migrate_profile(profile: dict, ctx: dict | None, role: str, settings: dict | None = None) -> tuple[dict, list[str]]:
    """The profile rendered for the version, and one note per change.

    A setting already in the form the version reads stays where it is (so the
    seed's version renders exactly as written); ``settings`` (version-neutral
    operator intent, ``vllm_settings``) wins over the profile.
    """
    if ctx is None:
        return profile, []
    rules = ctx["rules"]
    out = copy.deepcopy(profile)
    notes: list[str] = []
    if not isinstance(out.get("env"), dict):
        out["env"] = {}
    env = out["env"]
    known = rules.get("settings") or {}
    for name in settings or {}:
        if name not in known:
            raise VersionError([f"vllm_settings.{name} is not a known setting; known: {', '.join(sorted(known))}"])
    for name, setting in known.items():
        read, kind = _read(ctx, setting), setting["type"]
        serve_add = (out.get("serve") or {}).get("additional-config") or {}
        in_env, in_key = env.get(setting["env"]) is not None, setting["key"] in serve_add
        if name in (settings or {}):
            value = settings[name]
            if value is None:
                continue
            if in_env:
                env.pop(setting["env"])
            if in_key:
                _additional(out).pop(setting["key"])
            in_env = in_key = False
            if read == "env":
                env[setting["env"]] = key_to_env(value, kind)
            elif read != "removed":
                _additional(out)[setting["key"]] = env_to_key(value, kind) if isinstance(value, str) else value
            else:
                notes.append(f"vllm_settings.{name} dropped: {_version_label(ctx)} has removed it")
            continue
        if read == "removed" and (in_env or in_key):
            env.pop(setting["env"], None)
            _additional(out).pop(setting["key"], None)
            notes.append(f"{name}: dropped, {_version_label(ctx)} has removed it")
        elif read == "env" and in_key:
            value = _additional(out).pop(setting["key"])
            if not in_env:
                env[setting["env"]] = key_to_env(value, kind)
            notes.append(f"{name}: additional_config {setting['key']} -> env {setting['env']}")
        elif read in ("key", "key_env_fallback") and in_env:
            value = env.pop(setting["env"])
            if not in_key:
                _additional(out)[setting["key"]] = env_to_key(value, kind)
            notes.append(f"{name}: env {setting['env']} -> additional_config {setting['key']}")
    _migrate_role_rules(out, ctx, role, notes)
    _apply_recipe(out, ctx, role, notes)
    return out, notes


def _migrate_role_rules(profile: dict, ctx: dict, role: str, notes: list[str]) -> None:
    for name, rule in (ctx["rules"].get("role_rules") or {}).items():
        key = rule.get("key")
        level = rule["families"][ctx["family"]].get(role)
        additional = (profile.get("serve") or {}).get("additional-config") or {}
        if key and level == "ignored" and key in additional:
            additional.pop(key)
            notes.append(f"{name}: dropped on {role}, {_version_label(ctx)} ignores it there")


def _apply_recipe(profile: dict, ctx: dict, role: str, notes: list[str]) -> None:
    recipe = (ctx["rules"].get("recipes") or {}).get(ctx["family"]) or {}
    kv = profile.get("kv_transfer")
    if "kv_transfer_engine_id" in recipe and isinstance(kv, dict) and kv.get("engine_id", True) != recipe["kv_transfer_engine_id"]:
        kv["engine_id"] = recipe["kv_transfer_engine_id"]
        notes.append(f"kv_transfer engine_id: {'kept' if kv['engine_id'] else 'left out'} ({ctx['family']} recipe)")
    spec_patch = (recipe.get("speculative_config") or {}).get(role)
    serve = profile.get("serve") or {}
    if spec_patch and isinstance(serve.get("speculative-config"), dict):
        serve["speculative-config"] = {**serve["speculative-config"], **spec_patch}
        notes.append(f"speculative-config on {role}: " + ", ".join(f"{k}={v}" for k, v in spec_patch.items())
                     + f" ({ctx['family']} recipe)")


def lint_launch(where: str, role: str, env: dict, additional: dict, ctx: dict | None,
                errors: list[str], warnings: list[str]) -> None:
    """Reject settings of one rendered launch that the version does not read as given."""
    if ctx is None:
        return
    label = _version_label(ctx)
    for name, setting in (ctx["rules"].get("settings") or {}).items():
        read = _read(ctx, setting)
        var, key = setting["env"], setting["key"]
        unconfirmed = "" if setting["families"][ctx["family"]].get("confirmed", True) else " (unconfirmed for this family)"
        if var in env and read in ("key", "removed"):
            fix = (f"use --additional-config {{\"{key}\": {_json_value(env_to_key_safe(env[var], setting['type']))}}} "
                   f"(vllm_additional_config_overrides or vllm_settings.{name})") if read == "key" else "remove it"
            errors.append(f"{where}: env {var} is no longer read by {label}{unconfirmed}; replacement: {fix}")
        elif var in env and read == "key_env_fallback":
            warnings.append(f"{where}: env {var} is deprecated in {label}; replacement: additional_config {key} "
                            f"(vllm_settings.{name})")
        if key in additional and read in ("env", "removed"):
            fix = f"set env {var} (vllm_env_overrides or vllm_settings.{name})" if read == "env" else "remove it"
            errors.append(f"{where}: additional_config {key} is not read by {label}{unconfirmed}; replacement: {fix}")
    for name, rule in (ctx["rules"].get("role_rules") or {}).items():
        key = rule.get("key")
        if key and key in additional and additional[key] and rule["families"][ctx["family"]].get(role) == "ignored":
            errors.append(f"{where}: additional_config {key} is ignored on {role} by {label}; "
                          f"replacement: none, set it on decode only (vllm_additional_config_overrides {{{key}: null}})")


def env_to_key_safe(value, kind: str):
    """``env_to_key``, or the raw value when it does not parse."""
    try:
        return env_to_key(value, kind)
    except ValueError:
        return value


def _json_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def rules_table(rules: dict) -> list[dict]:
    """One row per setting and family: what the docs table shows."""
    rows = []
    for name, setting in (rules.get("settings") or {}).items():
        for family, spec in setting["families"].items():
            rows.append({"setting": name, "family": family, "env": setting["env"], "key": setting["key"],
                         "read": spec["read"], "confirmed": spec.get("confirmed", True),
                         "note": spec.get("note", ""), "source": setting.get("source", "")})
    return rows
