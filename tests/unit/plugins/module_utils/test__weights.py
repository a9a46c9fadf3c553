"""Unit tests for plugins/module_utils/_weights.py on synthetic checkpoints (real files, real processes)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "unit"
COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
sys.path.insert(0, str(UNIT))

from weights_helpers import Checkpoint, Spec, make_checkpoint, parse_safetensors, tensor_bytes, write_safetensors  # noqa: E402

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights import (  # noqa: E402
    MTP_SHARD,
    WeightsError,
    mtp_weights,
    parse_manifest,
    verify_weights,
)

EMBED, HEAD = "model.layers.4.embed_tokens.weight", "model.layers.4.shared_head.head.weight"


@pytest.fixture
def ckpt(tmp_path: Path) -> Checkpoint:
    return make_checkpoint(tmp_path / "GLM-5")


def snapshot(path: Path) -> dict[str, tuple[int, str]]:
    """File name -> (mtime_ns, sha256) of every file in ``path``."""
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(path.iterdir())}


def test_adjust_copies_bytes_and_writes_valid_shard_and_index(ckpt: Checkpoint) -> None:
    before_index = json.loads(ckpt.index_path.read_text())
    result = mtp_weights(str(ckpt.path))
    assert result["changed"] is True and result["layer"] == 4
    assert result["keys"] == [EMBED, HEAD]
    shard = ckpt.path / MTP_SHARD
    length, header = parse_safetensors(shard)
    assert length % 8 == 0
    assert header["__metadata__"] == {"format": "pt"}
    assert header[EMBED] == {"dtype": "BF16", "shape": [512, 64], "data_offsets": [0, 65536]}
    assert header[HEAD] == {"dtype": "BF16", "shape": [512, 64], "data_offsets": [65536, 131072]}
    assert shard.stat().st_size == 8 + length + 131072
    assert tensor_bytes(shard, EMBED) == tensor_bytes(ckpt.shard_of("model.embed_tokens.weight"), "model.embed_tokens.weight")
    assert tensor_bytes(shard, HEAD) == tensor_bytes(ckpt.shard_of("lm_head.weight"), "lm_head.weight")
    after_index = json.loads(ckpt.index_path.read_text())
    assert after_index["metadata"] == before_index["metadata"]
    assert after_index["weight_map"] == dict(before_index["weight_map"], **{EMBED: MTP_SHARD, HEAD: MTP_SHARD})
    assert result["diff"]["before"] == ""
    assert result["diff"]["after"] == '"%s": "%s"\n"%s": "%s"\n' % (EMBED, MTP_SHARD, HEAD, MTP_SHARD)
    assert verify_weights(str(ckpt.path), require_mtp=True)["shard_count"] == 4
    assert not [p for p in ckpt.path.iterdir() if p.name.endswith(".tmp")]


def test_adjust_is_idempotent_and_writes_nothing_the_second_time(ckpt: Checkpoint) -> None:
    assert mtp_weights(str(ckpt.path))["changed"] is True
    before = snapshot(ckpt.path)
    time.sleep(0.01)
    second = mtp_weights(str(ckpt.path))
    assert second["changed"] is False
    assert second["diff"]["before"] == second["diff"]["after"]
    assert snapshot(ckpt.path) == before


def test_check_mode_writes_nothing(ckpt: Checkpoint) -> None:
    before = snapshot(ckpt.path)
    result = mtp_weights(str(ckpt.path), check_mode=True)
    assert result["changed"] is True and EMBED in result["diff"]["after"]
    assert snapshot(ckpt.path) == before


@pytest.mark.parametrize("suffix", ["/", "//", ""])
def test_trailing_slash(ckpt: Checkpoint, suffix: str) -> None:
    result = mtp_weights(str(ckpt.path) + suffix)
    assert result["changed"] is True
    assert result["index"] == str(ckpt.index_path)
    assert json.loads(ckpt.index_path.read_text())["weight_map"][HEAD] == MTP_SHARD


def test_file_mode_is_kept(ckpt: Checkpoint) -> None:
    os.chmod(ckpt.index_path, 0o664)
    mtp_weights(str(ckpt.path))
    assert ckpt.index_path.stat().st_mode & 0o777 == 0o664
    assert (ckpt.path / MTP_SHARD).stat().st_mode & 0o777 == 0o644


def test_layer_option_overrides_config(ckpt: Checkpoint) -> None:
    result = mtp_weights(str(ckpt.path), layer=78)
    assert result["keys"] == ["model.layers.78.embed_tokens.weight", "model.layers.78.shared_head.head.weight"]
    assert "model.layers.78.shared_head.head.weight" in json.loads(ckpt.index_path.read_text())["weight_map"]


def test_stale_mtp_shard_is_regenerated(ckpt: Checkpoint) -> None:
    mtp_weights(str(ckpt.path))
    write_safetensors(ckpt.path / MTP_SHARD, [Spec(EMBED, "BF16", (512, 64), 99), Spec(HEAD, "BF16", (512, 64), 98)])
    assert mtp_weights(str(ckpt.path))["changed"] is True
    assert tensor_bytes(ckpt.path / MTP_SHARD, EMBED) == tensor_bytes(ckpt.shard_of("model.embed_tokens.weight"),
                                                                      "model.embed_tokens.weight")
    assert mtp_weights(str(ckpt.path))["changed"] is False


def test_mtp_shard_written_but_index_not_is_completed(ckpt: Checkpoint) -> None:
    original = ckpt.index_path.read_bytes()
    mtp_weights(str(ckpt.path))
    ckpt.index_path.write_bytes(original)  # as if killed between the two renames
    result = mtp_weights(str(ckpt.path))
    assert result["changed"] is True and result["diff"]["before"] == ""
    assert mtp_weights(str(ckpt.path))["changed"] is False


def test_foreign_mtp_tensor_is_not_overwritten(ckpt: Checkpoint) -> None:
    write_safetensors(ckpt.path / "model-mtp.safetensors", [Spec(EMBED, "BF16", (512, 64), 7), Spec(HEAD, "BF16", (512, 64), 8)])
    index = json.loads(ckpt.index_path.read_text())
    index["weight_map"].update({EMBED: "model-mtp.safetensors", HEAD: "model-mtp.safetensors"})
    ckpt.index_path.write_text(json.dumps(index))
    with pytest.raises(WeightsError, match="ships its own MTP weights") as err:
        mtp_weights(str(ckpt.path))
    assert err.value.shard == "model-mtp.safetensors" and err.value.tensor == EMBED
    assert not (ckpt.path / MTP_SHARD).exists()


def test_foreign_tensor_on_second_key_is_not_overwritten(ckpt: Checkpoint) -> None:
    write_safetensors(ckpt.path / "model-mtp.safetensors", [Spec(HEAD, "BF16", (512, 64), 8)])
    index = json.loads(ckpt.index_path.read_text())
    index["weight_map"][HEAD] = "model-mtp.safetensors"
    ckpt.index_path.write_text(json.dumps(index))
    with pytest.raises(WeightsError, match="ships its own MTP weights") as err:
        mtp_weights(str(ckpt.path))
    assert err.value.tensor == HEAD


def test_foreign_identical_mtp_tensors_count_as_done(ckpt: Checkpoint) -> None:
    write_safetensors(ckpt.path / "model-mtp.safetensors", [Spec(EMBED, "BF16", (512, 64), 1), Spec(HEAD, "BF16", (512, 64), 3)])
    index = json.loads(ckpt.index_path.read_text())
    index["weight_map"].update({EMBED: "model-mtp.safetensors", HEAD: "model-mtp.safetensors"})
    ckpt.index_path.write_text(json.dumps(index))
    result = mtp_weights(str(ckpt.path))
    assert result["changed"] is False and result["shard"].endswith("model-mtp.safetensors")


def _drop(ckpt: Checkpoint, key: str) -> None:
    index = json.loads(ckpt.index_path.read_text())
    del index["weight_map"][key]
    ckpt.index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("break_it,message", [
    (lambda c: (c.path / "config.json").unlink(), r"config not found: .*GLM-5/config\.json"),
    (lambda c: (c.path / "config.json").write_text('{"num_hidden_layers": "78"}'), r"num_hidden_layers is '78'"),
    (lambda c: (c.path / "config.json").write_text("{"), r"config .*config\.json is unreadable or not JSON"),
    (lambda c: _drop(c, "lm_head.weight"), r"index .*model\.safetensors\.index\.json has no weight_map entry for lm_head\.weight"),
    (lambda c: c.shard_of("model.embed_tokens.weight").unlink(),
     r"shard .*model-00001-of-00003\.safetensors named by the index does not exist"),
    (lambda c: write_safetensors(c.shard_of("lm_head.weight"), [Spec("model.norm.weight", "F32", (64,))]),
     r"shard .*model-00003-of-00003\.safetensors does not hold lm_head\.weight"),
    (lambda c: c.shard_of("lm_head.weight").write_bytes(c.shard_of("lm_head.weight").read_bytes()[:-1]),
     r"model-00003-of-00003\.safetensors: tensor data ends at byte .* \(truncated\)"),
    (lambda c: c.index_path.unlink(), r"no model\.safetensors\.index\.json or \*\.safetensors\.index\.json in"),
    (lambda c: c.index_path.write_text('{"weight_map": []}'), r"has no weight_map object"),
])
def test_adjust_failures_name_the_culprit(ckpt: Checkpoint, break_it, message: str) -> None:
    break_it(ckpt)
    with pytest.raises(WeightsError, match=message):
        mtp_weights(str(ckpt.path))
    assert not (ckpt.path / MTP_SHARD).exists()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="checkpoint directory not found: .*nowhere"):
        mtp_weights(str(tmp_path / "nowhere"))


def test_quantized_index_name_is_found(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "w8a8", index_name="quant_model_weight_w8a8.safetensors.index.json")
    assert mtp_weights(str(ckpt.path))["index"] == str(ckpt.index_path)
    assert HEAD in json.loads(ckpt.index_path.read_text())["weight_map"]


def test_several_indexes_need_index_name(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "q", index_name="a.safetensors.index.json")
    (ckpt.path / "b.safetensors.index.json").write_bytes(ckpt.index_path.read_bytes())
    with pytest.raises(WeightsError, match="several index files .*a.safetensors.index.json, b.safetensors.index.json"):
        mtp_weights(str(ckpt.path))
    assert mtp_weights(str(ckpt.path), index_name="b.safetensors.index.json")["changed"] is True
    assert HEAD not in json.loads(ckpt.index_path.read_text())["weight_map"]


@pytest.fixture
def big_ckpt(tmp_path: Path):
    """2 x 64 MiB of embed/lm_head, removed afterwards (pytest keeps old tmp dirs otherwise)."""
    yield make_checkpoint(tmp_path / "big", vocab=16384, hidden=2048)
    shutil.rmtree(tmp_path / "big")


def test_crash_during_copy_leaves_index_intact_and_rerun_completes(big_ckpt: Checkpoint) -> None:
    # Copying 128 MiB 256 bytes at a time takes seconds: long enough to SIGKILL mid-copy.
    ckpt = big_ckpt
    original = ckpt.index_path.read_bytes()
    tmp = ckpt.path / (".%s.%s.tmp" % (MTP_SHARD, socket.gethostname()))
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights import mtp_weights\n"
            "mtp_weights(%r, chunk_size=256)\n" % (str(COLLECTIONS), str(ckpt.path)))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not (tmp.exists() and tmp.stat().st_size > 4 << 20):
            assert proc.poll() is None, "adjust finished before it could be killed"
            assert time.monotonic() < deadline, "temp shard never grew"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.index_path.read_bytes() == original
    assert not (ckpt.path / MTP_SHARD).exists()
    assert tmp.stat().st_size < 2 * 16384 * 2048 * 2
    assert mtp_weights(str(ckpt.path))["changed"] is True
    assert not tmp.exists()
    assert tensor_bytes(ckpt.path / MTP_SHARD, HEAD) == tensor_bytes(ckpt.shard_of("lm_head.weight"), "lm_head.weight")
    assert mtp_weights(str(ckpt.path))["changed"] is False


# --- verify -----------------------------------------------------------------------------------


def test_verify_counts(ckpt: Checkpoint) -> None:
    result = verify_weights(str(ckpt.path) + "/")
    assert result["changed"] is False
    assert (result["shard_count"], result["tensor_count"]) == (3, 7)
    assert result["total_bytes"] == json.loads(ckpt.index_path.read_text())["metadata"]["total_size"]


def _shift_offsets(ckpt: Checkpoint) -> None:
    path = ckpt.shard_of("lm_head.weight")
    length, doc = parse_safetensors(path)
    data = path.read_bytes()[8 + length:]
    doc["model.norm.weight"]["data_offsets"] = [doc["model.norm.weight"]["data_offsets"][0] + 4,
                                                doc["model.norm.weight"]["data_offsets"][1] + 4]
    body = json.dumps(doc).encode()
    path.write_bytes(len(body).to_bytes(8, "little") + body + data + bytes(4))


@pytest.mark.parametrize("break_it,shard,tensor,message", [
    (lambda c: c.shard_of("lm_head.weight").write_bytes(c.shard_of("lm_head.weight").read_bytes()[:-10]),
     "model-00003-of-00003.safetensors", None, "truncated"),
    (lambda c: c.shard_of("model.norm.weight").unlink(), "model-00003-of-00003.safetensors", None, "does not exist"),
    (_shift_offsets, "model-00003-of-00003.safetensors", None, "'model.norm.weight' starts at data offset"),
    (lambda c: write_safetensors(c.shard_of("model.embed_tokens.weight"), [Spec("model.embed_tokens.weight", "BF16", (512, 64), 1)]),
     "model-00001-of-00003.safetensors", "model.layers.0.input_layernorm.weight", "mapped to .* but the shard does not hold it"),
])
def test_verify_names_first_bad_shard_and_tensor(ckpt: Checkpoint, break_it, shard: str, tensor, message: str) -> None:
    break_it(ckpt)
    with pytest.raises(WeightsError, match=message) as err:
        verify_weights(str(ckpt.path))
    assert (err.value.shard, err.value.tensor) == (shard, tensor)
    assert shard in str(err.value)


def _sums(ckpt: Checkpoint) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ckpt.path.glob("*.safetensors"))}


def test_verify_manifest_file_and_dict(ckpt: Checkpoint) -> None:
    sums = _sums(ckpt)
    (ckpt.path / "SHA256SUMS").write_text("".join("%s  %s\n" % (h, n) for n, h in sums.items()))
    assert verify_weights(str(ckpt.path), manifest="SHA256SUMS", chunk_size=1000)["manifest_checked"] == sorted(sums)
    assert verify_weights(str(ckpt.path), manifest={"./" + n: h.upper() for n, h in sums.items()})["manifest_checked"] == sorted(sums)


@pytest.mark.parametrize("as_file", [True, False])
def test_verify_manifest_bad_hash_names_file(ckpt: Checkpoint, as_file: bool) -> None:
    sums = _sums(ckpt)
    sums["model-00002-of-00003.safetensors"] = "0" * 64
    manifest = sums
    if as_file:
        (ckpt.path / "SHA256SUMS").write_text("".join("%s *%s\n" % (h, n) for n, h in sums.items()))
        manifest = str(ckpt.path / "SHA256SUMS")
    with pytest.raises(WeightsError, match="sha256 of .*model-00002-of-00003.safetensors is [0-9a-f]{64}, manifest says 0{64}") as err:
        verify_weights(str(ckpt.path), manifest=manifest)
    assert err.value.shard == "model-00002-of-00003.safetensors"


def test_verify_manifest_missing_file_and_bad_line(ckpt: Checkpoint) -> None:
    with pytest.raises(WeightsError, match="listed in the manifest does not exist"):
        verify_weights(str(ckpt.path), manifest={"gone.safetensors": "a" * 64})
    with pytest.raises(WeightsError, match="manifest .*SUMS cannot be read"):
        verify_weights(str(ckpt.path), manifest="SUMS")
    with pytest.raises(WeightsError, match=r"manifest m line 2 is not"):
        parse_manifest("# comment\nabc  file\n", "m")


def test_verify_require_mtp(ckpt: Checkpoint) -> None:
    with pytest.raises(WeightsError, match="lacks MTP tensor model.layers.4.embed_tokens.weight.*F1") as err:
        verify_weights(str(ckpt.path), require_mtp=True)
    assert err.value.tensor == EMBED
    mtp_weights(str(ckpt.path))
    assert verify_weights(str(ckpt.path), require_mtp=True)["tensor_count"] == 9
    with pytest.raises(WeightsError, match="lacks MTP tensor model.layers.78"):
        verify_weights(str(ckpt.path), require_mtp=True, layer=78)
