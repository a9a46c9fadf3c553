#!/usr/bin/env python
"""Benchmark: the seed tutorial's adjust_weight.py (torch + safetensors) against our streaming
mtp_weights, on the same synthetic >= 2 GB bf16 checkpoint. Run by hand, not a test:

    python3 benchmarks/mtp_adjust.py [--workdir /tmp/mtp_bench] [--venv /tmp/mtp_bench_venv]

It creates a venv with torch==2.13.0, safetensors and numpy (save_file needs it) once, writes a
checkpoint whose embed_tokens and lm_head are ~600 MiB bf16 each plus filler shards, then runs
each tool in its own process on its own copy (shards hard-linked, index copied) with a warm
page cache, and prints wall time, peak RSS (ru_maxrss from wait4) and the ratios ours/seed.
Targets: peak RSS <= 0.1x, time <= 1.0x. Both outputs are checked to hold the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit"))
sys.path.insert(0, str(REPO / ".collections"))

from weights_helpers import make_checkpoint, parse_safetensors  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.module_utils._safetensors import sha256_range  # noqa: E402

LAYER = 78
# The seed's adjust_weight.py, indentation restored; unchanged otherwise (layer 78 is GLM-5's).
SEED_SCRIPT = '''\
from safetensors.torch import safe_open, save_file
import torch
import json
import os
import sys
target_keys = ["model.embed_tokens.weight", "lm_head.weight"]
def get_tensor_info(file_path):
    with safe_open(file_path, framework="pt", device="cpu") as f:
        tensor_names = f.keys()
        tensor_dict = {}
        for name in tensor_names:
            tensor = f.get_tensor(name)
            tensor_dict[name] = tensor
    return tensor_dict
if __name__ == "__main__":
    directory_path = sys.argv[1]
    json_name = "model.safetensors.index.json"
    json_path = os.path.join(directory_path, json_name)
    with open(json_path, 'r', encoding='utf-8') as f:
        json_data = json.load(f)
    weight_map = json_data.get('weight_map', {})
    file_list = []
    for key in target_keys:
        safetensor_file = weight_map.get(key)
        file_list.append(directory_path + safetensor_file)
    new_dict = {}
    for file_path in file_list:
        tensor_dict = get_tensor_info(file_path)
        for key in target_keys:
            if key in tensor_dict:
                if key == "model.embed_tokens.weight":
                    new_key = "model.layers.78.embed_tokens.weight"
                elif key == "lm_head.weight":
                    new_key = "model.layers.78.shared_head.head.weight"
                new_dict[new_key] = tensor_dict[key]
    new_file_name = os.path.join(directory_path, "mtp-others.safetensors")
    new_keys = ["model.layers.78.embed_tokens.weight", "model.layers.78.shared_head.head.weight"]
    save_file(tensors=new_dict, filename=new_file_name)
    for key in new_keys:
        json_data["weight_map"][key] = "mtp-others.safetensors"
    with open(json_path, 'w', encoding='utf-8') as f:
        json.dump(json_data, f, indent=2)
'''
OURS = ("import sys; sys.path.insert(0, %r)\n"
        "from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights import mtp_weights\n"
        "print(mtp_weights(sys.argv[1])['changed'])\n" % str(REPO / ".collections"))


def ensure_venv(venv: Path) -> Path:
    """Venv with torch 2.13.0 (CPU), safetensors and numpy; created once and reused."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import torch, safetensors, numpy"],
                                          capture_output=True, check=False).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "safetensors", "numpy"], check=True)
    return python


def build(base: Path) -> int:
    """Write the synthetic checkpoint once; returns its size in bytes."""
    if not (base / "model.safetensors.index.json").exists():
        # 51200 x 6144 bf16 = 600 MiB each for embed_tokens and lm_head; 3 filler shards of ~300 MiB.
        make_checkpoint(base, layers=LAYER, vocab=51200, hidden=6144, filler_shards=3, filler_bytes=150 << 20)
    return sum(p.stat().st_size for p in base.iterdir())


def fresh_copy(base: Path, dest: Path) -> Path:
    """Shards hard-linked (neither tool modifies them), index and config copied."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for item in base.iterdir():
        if item.suffix == ".safetensors":
            os.link(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)
    return dest


def warm(path: Path) -> None:
    for item in sorted(path.iterdir()):
        with open(item, "rb") as fp:
            while fp.read(16 << 20):
                pass


def measure(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one child process."""
    start = time.monotonic()
    proc = subprocess.Popen(argv)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit("%s exited with %d" % (argv, proc.returncode))
    return elapsed, usage.ru_maxrss * 1024


def tensor_digests(shard: Path) -> dict[str, tuple[str, list, str]]:
    length, header = parse_safetensors(shard)
    return {name: (meta["dtype"], meta["shape"],
                   sha256_range(str(shard), 8 + length + meta["data_offsets"][0], meta["data_offsets"][1] - meta["data_offsets"][0]))
            for name, meta in header.items() if name != "__metadata__"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mtp_bench"))
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mtp_bench_venv"))
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint copies afterwards")
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    seed_script = args.workdir / "adjust_weight.py"
    seed_script.write_text(SEED_SCRIPT)
    size = build(args.workdir / "base")
    print("checkpoint: %.2f GB in %s" % (size / 1e9, args.workdir / "base"))

    seed_dir = fresh_copy(args.workdir / "base", args.workdir / "seed")
    warm(seed_dir)
    seed_time, seed_rss = measure([str(python), str(seed_script), str(seed_dir) + "/"])
    ours_dir = fresh_copy(args.workdir / "base", args.workdir / "ours")
    warm(ours_dir)
    ours_time, ours_rss = measure([str(python), "-c", OURS, str(ours_dir)])

    seed_out, ours_out = tensor_digests(seed_dir / "mtp-others.safetensors"), tensor_digests(ours_dir / "mtp-others.safetensors")
    seed_map = json.loads((seed_dir / "model.safetensors.index.json").read_text())["weight_map"]
    ours_map = json.loads((ours_dir / "model.safetensors.index.json").read_text())["weight_map"]
    same = seed_out == ours_out and seed_map == ours_map
    print("%-6s %10s %14s" % ("", "wall s", "peak RSS MiB"))
    print("%-6s %10.2f %14.1f" % ("seed", seed_time, seed_rss / 2 ** 20))
    print("%-6s %10.2f %14.1f" % ("ours", ours_time, ours_rss / 2 ** 20))
    print("ratio ours/seed: time %.3fx (target <= 1.0x), peak RSS %.3fx (target <= 0.1x)"
          % (ours_time / seed_time, ours_rss / seed_rss))
    print("outputs identical (tensor dtype/shape/sha256 and weight_map): %s" % same)
    if not args.keep:
        shutil.rmtree(seed_dir)
        shutil.rmtree(ours_dir)
    ok = same and ours_time <= seed_time and ours_rss <= 0.1 * seed_rss
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
