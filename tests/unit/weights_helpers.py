"""Synthetic safetensors checkpoints for the weight tests and benchmarks/mtp_adjust.py (no torch), and a loopback
HTTP server for the mirror tests.

The writer and reader here are deliberately independent of plugins/module_utils/_safetensors.py
so that tests check the module against a second implementation of the format.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import random
import re
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

ITEM_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I8": 1, "U8": 1, "I32": 4, "I64": 8}
WRITE_CHUNK = 4 * 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Spec:
    """A tensor to generate: name, dtype, shape and the seed of its pseudo-random bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    seed: int = 0

    @property
    def nbytes(self) -> int:
        size = ITEM_BYTES[self.dtype]
        for dim in self.shape:
            size *= dim
        return size


def write_safetensors(path: Path, specs: list[Spec], metadata: Optional[dict[str, str]] = None) -> None:
    """Write a safetensors file, streaming each tensor's seeded random bytes in chunks."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for spec in specs:
        header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * ((8 - len(body) % 8) % 8)
    with open(path, "wb") as fp:
        fp.write(struct.pack("<Q", len(body)) + body)
        for spec in specs:
            rng = random.Random(spec.seed)
            remaining = spec.nbytes
            while remaining:
                step = min(WRITE_CHUNK, remaining)
                fp.write(rng.randbytes(step))
                remaining -= step


def parse_safetensors(path: Path) -> tuple[int, dict[str, dict]]:
    """(header length, header dict) of a safetensors file, read without the module's code."""
    with open(path, "rb") as fp:
        (length,) = struct.unpack("<Q", fp.read(8))
        return length, json.loads(fp.read(length))


def tensor_bytes(path: Path, name: str) -> bytes:
    """The raw bytes of tensor ``name`` in ``path``."""
    length, header = parse_safetensors(path)
    begin, end = header[name]["data_offsets"]
    with open(path, "rb") as fp:
        fp.seek(8 + length + begin)
        return fp.read(end - begin)


@dataclass
class Checkpoint:
    """A generated checkpoint: its directory, index path and tensor -> shard map."""

    path: Path
    index_path: Path
    layers: int
    weight_map: dict[str, str] = field(default_factory=dict)

    def shard_of(self, tensor: str) -> Path:
        return self.path / self.weight_map[tensor]


def make_checkpoint(root: Path, layers: int = 4, vocab: int = 512, hidden: int = 64,
                    index_name: str = "model.safetensors.index.json", filler_shards: int = 1,
                    filler_bytes: int = 4096) -> Checkpoint:
    """A GLM-like checkpoint: embed_tokens (BF16) in the first shard, lm_head (BF16) in the last,
    layer tensors in BF16, F32 and I8 spread over ``filler_shards`` shards in between."""
    root.mkdir(parents=True, exist_ok=True)
    total = filler_shards + 2
    name = "model-%05d-of-%05d.safetensors"
    shards: list[list[Spec]] = [[Spec("model.embed_tokens.weight", "BF16", (vocab, hidden), 1),
                                 Spec("model.layers.0.input_layernorm.weight", "F32", (hidden,), 2)]]
    filler_rows = max(1, filler_bytes // hidden)
    for shard in range(filler_shards):
        layer = 1 + shard % max(1, layers - 1)
        shards.append([Spec("model.layers.%d.mlp.gate.weight" % layer, "BF16", (filler_rows // 2 or 1, hidden), 10 + shard),
                       Spec("model.layers.%d.mlp.down_proj.weight" % layer, "I8", (filler_rows, hidden), 100 + shard),
                       Spec("model.layers.%d.mlp.down_proj.weight_scale" % layer, "F32", (filler_rows,), 200 + shard)])
    shards.append([Spec("lm_head.weight", "BF16", (vocab, hidden), 3), Spec("model.norm.weight", "F32", (hidden,), 4)])
    weight_map: dict[str, str] = {}
    total_size = 0
    for number, specs in enumerate(shards, 1):
        write_safetensors(root / (name % (number, total)), specs)
        for spec in specs:
            weight_map[spec.name] = name % (number, total)
            total_size += spec.nbytes
    index_path = root / index_name
    index_path.write_text(json.dumps({"metadata": {"total_size": total_size}, "weight_map": weight_map}, indent=2))
    (root / "config.json").write_text(json.dumps({"architectures": ["GlmMoeDsaForCausalLM"],
                                                  "num_hidden_layers": layers, "hidden_size": hidden,
                                                  "vocab_size": vocab, "tie_word_embeddings": False}))
    return Checkpoint(root, index_path, layers, weight_map)


def run_cli(module: str, args: str, *flags: str) -> tuple[str, dict]:
    """Run `ansible localhost -m <module> -a <args>` from the checkout with this interpreter;
    returns (status such as CHANGED or FAILED, result dict plus its printed output in ``_stdout``)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=%s" % sys.executable, "-m", module, "-a", args, *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r"^localhost \| (\w+)!? => (\{.*\})\s*$", proc.stdout, re.S | re.M)
    if not match:
        raise AssertionError("no result in ansible output:\n%s\n%s" % (proc.stdout, proc.stderr))
    return match.group(1), dict(json.loads(match.group(2)), _stdout=proc.stdout)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, no request log on stderr."""

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_directory(root: Path, handler: type[http.server.SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """Serve ``root`` on a free loopback port while the block runs; yields ``http://127.0.0.1:<port>/``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d/" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
