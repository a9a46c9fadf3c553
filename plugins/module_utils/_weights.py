# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checkpoint logic behind ``mtp_weights`` and ``weights_verify`` (standard library only).

MTP adjustment (the seed's adjust_weight.py, KNOWN_FAILURES F1): copy
``model.embed_tokens.weight`` and ``lm_head.weight`` into ``mtp-others.safetensors`` as
``model.layers.<N>.embed_tokens.weight`` / ``model.layers.<N>.shared_head.head.weight``
(N = ``num_hidden_layers``) and map both in the index. Bytes are streamed, never loaded whole.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Optional, Union

from ansible_collections.ascend_ops.vllm.plugins.module_utils._safetensors import (
    DEFAULT_CHUNK,
    Header,
    SafetensorsError,
    TensorInfo,
    build_header,
    copy_range,
    read_header,
    sha256_range,
)

INDEX_NAME = "model.safetensors.index.json"
MTP_SHARD = "mtp-others.safetensors"
EMBED_KEY = "model.embed_tokens.weight"
HEAD_KEY = "lm_head.weight"
_SHA256_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


class WeightsError(Exception):
    """A checkpoint problem; ``shard``/``tensor`` name where it was found, when known."""

    def __init__(self, msg: str, shard: Optional[str] = None, tensor: Optional[str] = None) -> None:
        super().__init__(msg)
        self.shard = shard
        self.tensor = tensor


def mtp_keys(layer: int) -> dict[str, str]:
    """Source key -> MTP key for MTP layer ``layer``."""
    return {
        EMBED_KEY: "model.layers.%d.embed_tokens.weight" % layer,
        HEAD_KEY: "model.layers.%d.shared_head.head.weight" % layer,
    }


def _load_json(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fp:
            doc = json.load(fp)
    except FileNotFoundError:
        raise WeightsError("%s not found: %s" % (what, path)) from None
    except (OSError, ValueError) as exc:
        raise WeightsError("%s %s is unreadable or not JSON: %s" % (what, path, exc)) from None
    if not isinstance(doc, dict):
        raise WeightsError("%s %s is not a JSON object" % (what, path))
    return doc


def find_index(path: str, index_name: Optional[str] = None) -> str:
    """Path of the checkpoint's index: ``index_name``, else model.safetensors.index.json,
    else the single ``*.safetensors.index.json`` in ``path``."""
    if not os.path.isdir(path):
        raise WeightsError("checkpoint directory not found: %s" % path)
    if index_name:
        return os.path.join(path, index_name)
    default = os.path.join(path, INDEX_NAME)
    if os.path.exists(default):
        return default
    found = sorted(glob.glob(os.path.join(glob.escape(path), "*.safetensors.index.json")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise WeightsError("no %s or *.safetensors.index.json in %s" % (INDEX_NAME, path))
    raise WeightsError("several index files in %s: %s; set index_name to choose one"
                       % (path, ", ".join(os.path.basename(f) for f in found)))


def load_weight_map(index_path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The parsed index and its ``weight_map`` (tensor name -> shard file name)."""
    index = _load_json(index_path, "index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise WeightsError("index %s has no weight_map object of tensor -> shard file names" % index_path)
    return index, weight_map


def config_layers(path: str) -> int:
    """``num_hidden_layers`` from ``path``/config.json: the index of the MTP layer."""
    config_path = os.path.join(path, "config.json")
    layers = _load_json(config_path, "config").get("num_hidden_layers")
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise WeightsError("config %s: num_hidden_layers is %r, expected a positive integer" % (config_path, layers))
    return layers


def _shard_header(path: str, shard: str, tensor: Optional[str] = None) -> Header:
    shard_path = os.path.join(path, shard)
    if not os.path.isfile(shard_path):
        raise WeightsError("shard %s named by the index does not exist" % shard_path, shard, tensor)
    try:
        return read_header(shard_path)
    except SafetensorsError as exc:
        raise WeightsError(str(exc), shard, tensor) from None


@dataclass(frozen=True)
class Source:
    """One tensor to copy: where it is and the key it gets in the MTP shard."""

    target: str
    shard_path: str
    info: TensorInfo


@dataclass(frozen=True)
class MtpPlan:
    """What ``apply_mtp`` would do; ``changed`` is False when the index is already right."""

    path: str
    index_path: str
    index: dict[str, Any]
    layer: int
    sources: tuple[Source, ...]
    before: dict[str, Optional[str]]
    changed: bool


def _sources(path: str, weight_map: dict[str, str], layer: int, index_path: str) -> tuple[Source, ...]:
    result = []
    for key, target in mtp_keys(layer).items():
        shard = weight_map.get(key)
        if shard is None:
            raise WeightsError("index %s has no weight_map entry for %s" % (index_path, key), tensor=key)
        info = _shard_header(path, shard, key).tensors.get(key)
        if info is None:
            raise WeightsError("shard %s does not hold %s although the index maps it there"
                               % (os.path.join(path, shard), key), shard, key)
        result.append(Source(target, os.path.join(path, shard), info))
    return tuple(result)


def _holds_copy(path: str, shard: str, source: Source, chunk_size: int) -> bool:
    """True if ``shard`` holds ``source.target`` byte-identical to the source tensor."""
    try:
        held = _shard_header(path, shard, source.target).tensors.get(source.target)
    except WeightsError:
        if shard == MTP_SHARD:
            return False  # ours, missing or torn: regenerate it
        raise
    if held is not None and (held.dtype, held.shape) == (source.info.dtype, source.info.shape):
        if sha256_range(os.path.join(path, shard), held.begin, held.nbytes, chunk_size) == \
                sha256_range(source.shard_path, source.info.begin, source.info.nbytes, chunk_size):
            return True
    if shard != MTP_SHARD:
        raise WeightsError("index maps %s to %s, which holds a different tensor than %s; the checkpoint ships its "
                           "own MTP weights: check it with weights_verify instead of adjusting it"
                           % (source.target, os.path.join(path, shard), source.shard_path), shard, source.target)
    return False


def plan_mtp(path: str, layer: Optional[int] = None, index_name: Optional[str] = None,
             chunk_size: int = DEFAULT_CHUNK) -> MtpPlan:
    """Read config, index and headers and decide whether the MTP shard must be written."""
    path = os.path.normpath(path)
    index_path = find_index(path, index_name)
    index, weight_map = load_weight_map(index_path)
    layer = config_layers(path) if layer is None else layer
    sources = _sources(path, weight_map, layer, index_path)
    before = {s.target: weight_map.get(s.target) for s in sources}
    # A list, not a generator: every mapped key is checked, so a foreign MTP tensor always fails.
    done = [shard is not None and _holds_copy(path, shard, source, chunk_size)
            for source, shard in zip(sources, before.values())]
    changed = not all(done)
    return MtpPlan(path, index_path, index, layer, sources, before, changed)


def _atomic_write(dest: str, fill: Callable[[BinaryIO], None], like: str) -> None:
    """Write ``dest`` via a host-named temp file in its directory: fsync, rename, fsync the
    directory. Mode (and owner, as root) are copied from ``like``. A rerun on the same host
    truncates a temp file that a killed run left behind."""
    directory = os.path.dirname(dest)
    tmp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(dest), socket.gethostname()))
    ref = os.stat(like)
    try:
        with open(tmp, "wb") as fp:
            fill(fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(tmp, ref.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, ref.st_uid, ref.st_gid)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def apply_mtp(plan: MtpPlan, chunk_size: int = DEFAULT_CHUNK) -> None:
    """Write the MTP shard, then the index (each atomically): a crash leaves the old index."""
    header = build_header([(s.target, s.info.dtype, s.info.shape) for s in plan.sources])

    def fill_shard(fp: BinaryIO) -> None:
        fp.write(header)
        for source in plan.sources:
            with open(source.shard_path, "rb") as src:
                copy_range(src, source.info.begin, source.info.nbytes, fp, chunk_size)

    index = dict(plan.index)
    index["weight_map"] = dict(index["weight_map"], **{s.target: MTP_SHARD for s in plan.sources})
    text = (json.dumps(index, indent=2) + "\n").encode("utf-8")
    _atomic_write(os.path.join(plan.path, MTP_SHARD), fill_shard, plan.sources[0].shard_path)
    _atomic_write(plan.index_path, lambda fp: fp.write(text), plan.index_path)


def _entries(mapping: dict[str, Optional[str]]) -> str:
    return "".join('"%s": "%s"\n' % (key, shard) for key, shard in mapping.items() if shard is not None)


def mtp_weights(path: str, layer: Optional[int] = None, index_name: Optional[str] = None,
                chunk_size: int = DEFAULT_CHUNK, check_mode: bool = False) -> dict[str, Any]:
    """Ensure the MTP tensors exist and are indexed; returns the module result."""
    plan = plan_mtp(path, layer, index_name, chunk_size)
    after = {key: MTP_SHARD for key in plan.before} if plan.changed else dict(plan.before)
    if plan.changed and not check_mode:
        apply_mtp(plan, chunk_size)
    return {
        "changed": plan.changed,
        "layer": plan.layer,
        "index": plan.index_path,
        "shard": os.path.join(plan.path, after[plan.sources[0].target]),
        "keys": sorted(plan.before),
        "diff": {"before_header": plan.index_path + " weight_map", "after_header": plan.index_path + " weight_map",
                 "before": _entries(plan.before), "after": _entries(after)},
    }


def parse_manifest(text: str, origin: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>`` or ``<hex> *<name>``) -> {name: hex}."""
    result = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SHA256_LINE.match(line.rstrip("\r"))
        if not match:
            raise WeightsError("manifest %s line %d is not '<sha256>  <file>': %r" % (origin, number, line))
        result[os.path.normpath(match.group(2))] = match.group(1).lower()
    return result


def _manifest(path: str, manifest: Union[str, dict[str, str]]) -> dict[str, str]:
    if isinstance(manifest, dict):
        return {os.path.normpath(name): str(digest).lower() for name, digest in manifest.items()}
    manifest_path = os.path.join(path, manifest)
    try:
        with open(manifest_path, encoding="utf-8") as fp:
            return parse_manifest(fp.read(), manifest_path)
    except OSError as exc:
        raise WeightsError("manifest %s cannot be read: %s" % (manifest_path, exc.strerror or exc)) from None


def verify_weights(path: str, index_name: Optional[str] = None, manifest: Union[None, str, dict[str, str]] = None,
                   require_mtp: bool = False, layer: Optional[int] = None,
                   chunk_size: int = DEFAULT_CHUNK) -> dict[str, Any]:
    """Check every shard the index names; raise WeightsError naming the first bad shard/tensor."""
    path = os.path.normpath(path)
    index_path = find_index(path, index_name)
    weight_map = load_weight_map(index_path)[1]
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(tensor)
    tensor_count = total_bytes = 0
    for shard in sorted(by_shard):
        header = _shard_header(path, shard)
        for tensor in by_shard[shard]:
            if tensor not in header.tensors:
                raise WeightsError("tensor %s is mapped to %s by the index but the shard does not hold it"
                                   % (tensor, os.path.join(path, shard)), shard, tensor)
        tensor_count += len(header.tensors)
        total_bytes += sum(info.nbytes for info in header.tensors.values())
    if require_mtp:
        layer = config_layers(path) if layer is None else layer
        for key in mtp_keys(layer).values():
            if key not in weight_map:
                raise WeightsError("index %s lacks MTP tensor %s: bf16 checkpoints need the MTP adjustment "
                                   "(ascend_ops.vllm.mtp_weights), see KNOWN_FAILURES F1" % (index_path, key), tensor=key)
    checked = []
    for name, expected in sorted(_manifest(path, manifest).items()) if manifest else ():
        file_path = os.path.join(path, name)
        if not os.path.isfile(file_path):
            raise WeightsError("file %s listed in the manifest does not exist" % file_path, shard=name)
        actual = sha256_range(file_path, 0, os.path.getsize(file_path), chunk_size)
        if actual != expected:
            raise WeightsError("sha256 of %s is %s, manifest says %s" % (file_path, actual, expected), shard=name)
        checked.append(name)
    return {"changed": False, "index": index_path, "shard_count": len(by_shard), "tensor_count": tensor_count,
            "total_bytes": total_bytes, "dir_bytes": _visible_bytes(path), "manifest_checked": checked}


def _visible_bytes(path: str) -> int:
    """Bytes of the files an in-cluster copy of ``path`` takes (hidden, ``*.part`` and ``*.incomplete`` left out)."""
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if not name.startswith(".") and not name.endswith((".part", ".incomplete")):
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue
    return total
