#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_verify
short_description: Check that a safetensors checkpoint is complete and consistent
version_added: "0.1.0"
description:
  - Read-only check of a checkpoint before vLLM loads it (KNOWN_FAILURES F1, F2).
  - Every shard named by the index exists; every shard header parses (sane length, valid JSON, known dtypes,
    shape times dtype size equal to the byte span, offsets contiguous and within the file); every tensor the index
    maps to a shard is in that shard.
  - Optionally checks a sha256 manifest, streamed in chunks, and the presence of the MTP layer's tensors.
  - On failure the result names the first bad shard and tensor.
options:
  path:
    description: Checkpoint directory holding the index and the shards.
    type: path
    required: true
  index_name:
    description:
      - File name of the index inside O(path).
      - Defaults to C(model.safetensors.index.json), else the only C(*.safetensors.index.json) in O(path).
    type: str
  manifest:
    description:
      - Expected sha256 of files in O(path).
      - Either the path of a C(sha256sum)-format file (relative paths are taken inside O(path)),
        or a dict of file name to hex digest.
    type: raw
  require_mtp:
    description:
      - Require C(model.layers.<N>.embed_tokens.weight) and C(model.layers.<N>.shared_head.head.weight) in the index
        (bf16 checkpoints after M(ascend_ops.vllm.mtp_weights)).
    type: bool
    default: false
  layer:
    description: MTP layer index N for O(require_mtp). Defaults to C(num_hidden_layers) from C(config.json).
    type: int
  chunk_size:
    description: Bytes read per hashing step.
    type: int
    default: 8388608
attributes:
  check_mode:
    description: Read-only; runs the same checks in check mode and never reports a change.
extends_documentation_fragment:
  - ascend_ops.vllm.weights
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Verify the bf16 checkpoint including its MTP tensors
  ascend_ops.vllm.weights_verify:
    path: /root/.cache/GLM-5
    require_mtp: true

- name: Verify against the sha256 list shipped with the download
  ascend_ops.vllm.weights_verify:
    path: /root/.cache/GLM-5-w8a8
    manifest: SHA256SUMS
"""

RETURN = r"""
index:
  description: Path of the index file checked.
  returned: success
  type: str
shard_count:
  description: Number of shard files named by the index.
  returned: success
  type: int
  sample: 282
tensor_count:
  description: Number of tensors in those shards.
  returned: success
  type: int
total_bytes:
  description: Sum of the tensors' data bytes (the weight bytes to place on NPUs).
  returned: success
  type: int
dir_bytes:
  description: Bytes of the files under O(path) an in-cluster copy takes (hidden and partial files left out).
  returned: success
  type: int
manifest_checked:
  description: Files whose sha256 matched the manifest.
  returned: success
  type: list
  elements: str
shard:
  description: First bad shard (or manifest file).
  returned: failure
  type: str
tensor:
  description: First bad tensor, when the failure concerns one.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights import WeightsError, verify_weights


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            index_name=dict(type="str"),
            manifest=dict(type="raw"),
            require_mtp=dict(type="bool", default=False),
            layer=dict(type="int"),
            chunk_size=dict(type="int", default=8388608),
        ),
        supports_check_mode=True,
    )
    params = module.params
    manifest = params["manifest"]
    if manifest is not None and not isinstance(manifest, (str, dict)):
        module.fail_json(msg="manifest must be a file path or a dict of file name to sha256, got %s"
                         % type(manifest).__name__)
    if params["chunk_size"] < 1:
        module.fail_json(msg="chunk_size must be a positive number of bytes, got %d" % params["chunk_size"])
    try:
        result = verify_weights(params["path"], params["index_name"], manifest, params["require_mtp"],
                                params["layer"], params["chunk_size"])
    except (WeightsError, OSError) as exc:
        where = {key: getattr(exc, key, None) for key in ("shard", "tensor")}
        module.fail_json(msg=str(exc), **{key: value for key, value in where.items() if value is not None})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
