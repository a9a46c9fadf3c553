"""Golden tests: render.yml on each seed inventory reproduces the tutorial.

The expected commands are read from the tutorial text itself
(tests/golden/seed_glm5_tutorial.txt, a copy of the seed): every `export`
and every `vllm serve` flag, with `$local_ip`, `$nic_name`, `$node0_ip` and
the `$1..$7` of run_dp_template.sh replaced by what the seed's own
launch_online_dp.py commands give for each node. The rendered side is what
`ansible-playbook playbooks/render.yml` writes: plan.json, the env files
(sourced by a real bash) and the launch scripts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = Path(__file__).with_name("seed_glm5_tutorial.txt")


def seed_text() -> str:
    """The tutorial; its typographic quotes are stored escaped (\\u2019) so the repository passes no-smart-quotes."""
    return re.sub(r"\\u(201[89cd])", lambda m: chr(int(m.group(1), 16)), SEED.read_text(encoding="utf-8"))


ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


# --------------------------------------------------------------------------
# reading the seed
# --------------------------------------------------------------------------

def seed_scripts() -> list[dict]:
    """Every `vllm serve` script of the seed: its exports, shell variables and argv."""
    # Multi-line scripts continue with "\\<newline>"; the one-line PD scripts keep a literal "\\ ".
    text = re.sub(r"\\\n|\\ ", " ", seed_text().replace("\xa0", " "))
    text = text[text.index("5 Online Service Deployment"):]  # section 4's docker exports are not serve env
    scripts, env, shell_vars = [], {}, {}
    for line in text.splitlines():
        if "vllm serve" not in line and "export " not in line and not re.match(r"^\w+=", line):
            continue
        tokens = shlex.split(line)
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "export" and i + 1 < len(tokens) and "=" in tokens[i + 1]:
                key, _sep, value = tokens[i + 1].partition("=")
                env[key] = value
                i += 2
            elif tok == "vllm" and tokens[i + 1:i + 2] == ["serve"]:
                scripts.append({"env": env, "vars": shell_vars, "argv": tokens[i:]})
                env, shell_vars = {}, {}
                break
            elif re.match(r"^(nic_name|local_ip|node0_ip)=", tok):
                key, _sep, value = tok.partition("=")
                shell_vars[key] = value
                i += 1
            else:
                i += 1
    return scripts


def seed_dp_launches() -> list[dict]:
    """The seed's launch_online_dp.py invocations, expanded as the script does."""
    text = seed_text()
    launches = []
    for match in re.finditer(r"python launch_online_dp\.py ([^\n]+)", text):
        args = shlex.split(match.group(1))
        opts = {args[k].lstrip("-"): args[k + 1] for k in range(0, len(args), 2)}
        tp, local, start = int(opts["tp-size"]), int(opts["dp-size-local"]), int(opts["dp-rank-start"])
        node = []
        for i in range(local):
            node.append({
                "1": ",".join(str(x) for x in range(i * tp, (i + 1) * tp)),
                "2": str(int(opts["vllm-start-port"]) + i),
                "3": opts["dp-size"],
                "4": str(start + i),
                "5": opts["dp-address"],
                "6": opts["dp-rpc-port"],
                "7": str(tp),
            })
        launches.append(node)
    return launches


def seed_proxy_argv() -> list[str]:
    text = re.sub(r"\\\n", " ", seed_text().replace("\xa0", " "))
    line = next(ln for ln in text.splitlines() if re.search(r"load_balance_proxy_server_example\.py\s+--port", ln))
    return shlex.split(line)


def substitute(value: str, mapping: dict[str, str]) -> str:
    def repl(m):
        name = m.group(1)
        return mapping[name] if name in mapping else m.group(0)
    return re.sub(r"\$(\w+)", repl, value)


def flags(argv: list[str]) -> tuple[str, dict]:
    """`vllm serve MODEL --flag v ...` -> (MODEL, {flag: value}); JSON compared as JSON."""
    assert argv[:2] == ["vllm", "serve"], argv[:3]
    model, out, i = argv[2], {}, 3
    while i < len(argv):
        flag = argv[i]
        assert flag.startswith("--"), f"stray word {flag!r} in {argv}"
        values = []
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        parsed = []
        for v in values:
            parsed.append(json.loads(v) if v[:1] in "{[" else v)
        assert flag not in out, f"flag {flag} given twice"
        out[flag] = parsed[0] if len(parsed) == 1 else (parsed or True)
    return model, out


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------

def render(inventory: str, dest: Path) -> dict:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "playbooks/render.yml", "-i", f"inventories/{inventory}/hosts.yml",
         "-e", f"render_dir={dest}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads((dest / "plan.json").read_text())


def sourced_env(env_file: Path) -> dict[str, str]:
    """What bash really exports after sourcing the rendered env file (as the launch script does)."""
    script = f"set -a; . {shlex.quote(str(env_file))}; set +a; env -0"
    clean = {"PATH": os.environ["PATH"]}
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], env=clean,
                         capture_output=True, check=True).stdout.decode()
    base = subprocess.run(["bash", "--noprofile", "--norc", "-c", "env -0"], env=clean,
                          capture_output=True, check=True).stdout.decode()
    before = dict(kv.split("=", 1) for kv in base.split("\0") if kv)
    after = dict(kv.split("=", 1) for kv in out.split("\0") if kv)
    return {k: v for k, v in after.items() if before.get(k) != v}


SCRIPTS = seed_scripts()
DP_LAUNCHES = seed_dp_launches()

# inventory -> [(host, index of the seed script)] in the seed's node order.
SCENARIOS = {
    "a3_single_w4a8": [("node0", 0)],
    "a3_single_w8a8": [("node0", 1)],
    "a2_single_w4a8": [("node0", 2)],
    "a3_dp2_bf16": [("node0", 3), ("node1", 4)],
    "a2_dp2_w4a8": [("node0", 5), ("node1", 6)],
    "a3_dp2_w8a8": [("node0", 7), ("node1", 8)],
    "a3_1p1d_w8a8": [("prefill0", 9), ("prefill1", 10), ("decode0", 11), ("decode1", 12),
                     ("decode2", 13), ("decode3", 14)],
}


def test_seed_has_the_expected_scripts():
    """The seed holds 15 vllm serve scripts and 6 launch_online_dp.py commands."""
    assert len(SCRIPTS) == 15
    assert len(DP_LAUNCHES) == 6
    assert [s["argv"][2] for s in SCRIPTS[9:]] == ["/root/.cache/glm5-w8a8"] * 6


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    cache = {}

    def get(inventory):
        if inventory not in cache:
            dest = tmp_path_factory.mktemp(inventory)
            cache[inventory] = (render(inventory, dest), dest)
        return cache[inventory]
    return get


@pytest.mark.parametrize("inventory", sorted(SCENARIOS))
def test_render_matches_seed(inventory, rendered):
    plan, dest = rendered(inventory)
    assert list(plan["hosts"]) == [h for h, _spec in SCENARIOS[inventory]]
    master = plan["hosts"][SCENARIOS[inventory][0][0]]["address"]
    for host, index in SCENARIOS[inventory]:
        seed = SCRIPTS[index]
        planned = plan["hosts"][host]
        mapping = {"local_ip": planned["address"], "nic_name": planned["nic"], "node0_ip": master}
        if inventory == "a3_1p1d_w8a8":
            node_args = DP_LAUNCHES[index - 9]
            ips = {"node_p0_ip": plan["hosts"]["prefill0"]["address"], "node_d0_ip": plan["hosts"]["decode0"]["address"]}
            per_launch = [dict(mapping, **{k: substitute(v, ips) for k, v in args.items()}) for args in node_args]
        else:
            per_launch = [mapping]
        assert len(planned["launches"]) == len(per_launch), host
        for launch, values in zip(planned["launches"], per_launch):
            want_env = {k: substitute(v, values) if k != "LD_LIBRARY_PATH" else v for k, v in seed["env"].items()}
            assert launch["env"] == want_env, f"{inventory}/{host}/{launch['name']} env"
            want_model, want_flags = flags([substitute(a, values) for a in seed["argv"]])
            got_model, got_flags = flags(launch["argv"])
            assert got_model == want_model
            assert got_flags == want_flags, f"{inventory}/{host}/{launch['name']} flags"
            # The files on disk say the same: bash sources the env file to the planned values...
            env_file = dest / host / f"{launch['name']}.env"
            exported = sourced_env(env_file)
            want_exported = dict(want_env)
            want_exported["LD_LIBRARY_PATH"] = want_env.get("LD_LIBRARY_PATH", "").replace("$LD_LIBRARY_PATH", "")
            if "LD_LIBRARY_PATH" not in want_env:
                want_exported.pop("LD_LIBRARY_PATH")
            assert exported == want_exported
            assert oct(env_file.stat().st_mode & 0o777) == "0o600"
            # ...and the launch script execs exactly the planned argv.
            last = (dest / host / f"{launch['name']}.sh").read_text().strip().splitlines()[-1]
            assert shlex.split(last) == ["exec"] + launch["argv"]


def test_proxy_matches_seed(rendered):
    plan, dest = rendered("a3_1p1d_w8a8")
    hosts = plan["hosts"]
    ips = {"node_p0_ip": hosts["prefill0"]["address"], "node_p1_ip": hosts["prefill1"]["address"]}
    ips.update({f"node_d{i}_ip": hosts[f"decode{i}"]["address"] for i in range(4)})
    want = [substitute(a, ips) for a in seed_proxy_argv()]
    got = plan["proxy"]["argv"]
    assert Path(got[1]).name == want[1]
    assert [got[0]] + got[2:] == [want[0]] + want[2:]
    script = (dest / plan["proxy"]["host"] / "vllm-proxy.sh").read_text()
    assert "unset http_proxy" in script and "unset https_proxy" in script
    assert shlex.split(script.strip().splitlines()[-1]) == ["exec"] + got
