#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtp_weights
short_description: Add the MTP layer's embedding and head tensors to a bf16 GLM-5 checkpoint
version_added: "0.1.0"
description:
  - Does what the tutorial's C(adjust_weight.py) does, without torch and without loading shards.
  - Copies C(model.embed_tokens.weight) and C(lm_head.weight) into C(mtp-others.safetensors) as
    C(model.layers.<N>.embed_tokens.weight) and C(model.layers.<N>.shared_head.head.weight), N being
    C(num_hidden_layers) from C(config.json) (78 for GLM-5), and maps both keys in the index's C(weight_map).
  - Tensor bytes are streamed in chunks of O(chunk_size). The shard, then the index, are each written to a temp
    file in the checkpoint directory, fsynced and renamed, so an interrupted run leaves the original index intact.
  - Idempotent. Nothing is written when the index already maps both keys to a shard holding byte-identical tensors
    (same dtype and shape, same sha256).
  - Without this step vLLM reports C(Following weights were not initialized from checkpoint) for the MTP layer
    (KNOWN_FAILURES F1).
options:
  path:
    description: Checkpoint directory holding C(config.json), the index and the shards.
    type: path
    required: true
  layer:
    description: MTP layer index N. Defaults to C(num_hidden_layers) from C(config.json).
    type: int
  index_name:
    description:
      - File name of the index inside O(path).
      - Defaults to C(model.safetensors.index.json), else the only C(*.safetensors.index.json) in O(path).
    type: str
  chunk_size:
    description: Bytes read and written per copy or hash step.
    type: int
    default: 8388608
attributes:
  check_mode:
    description: Can run in check mode and report the change it would make without writing anything.
    support: full
  diff_mode:
    description: Returns the C(weight_map) entries before and after.
    support: full
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Add the MTP tensors to the bf16 checkpoint
  ascend_ops.vllm.mtp_weights:
    path: /root/.cache/GLM-5

- name: Quantized checkpoint with a non-default index name
  ascend_ops.vllm.mtp_weights:
    path: /root/.cache/GLM-5-w8a8
    index_name: quant_model_weight.safetensors.index.json
"""

RETURN = r"""
layer:
  description: MTP layer index used.
  returned: success
  type: int
  sample: 78
index:
  description: Path of the index file.
  returned: success
  type: str
  sample: /root/.cache/GLM-5/model.safetensors.index.json
shard:
  description: Path of the shard the MTP tensors are (or would be) mapped to.
  returned: success
  type: str
  sample: /root/.cache/GLM-5/mtp-others.safetensors
keys:
  description: The two MTP tensor names.
  returned: success
  type: list
  elements: str
  sample: [model.layers.78.embed_tokens.weight, model.layers.78.shared_head.head.weight]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights import WeightsError, mtp_weights


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            layer=dict(type="int"),
            index_name=dict(type="str"),
            chunk_size=dict(type="int", default=8388608),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["chunk_size"] < 1:
        module.fail_json(msg="chunk_size must be a positive number of bytes, got %d" % params["chunk_size"])
    if params["layer"] is not None and params["layer"] < 1:
        module.fail_json(msg="layer must be a positive integer, got %d" % params["layer"])
    try:
        result = mtp_weights(params["path"], params["layer"], params["index_name"], params["chunk_size"],
                             module.check_mode)
    except (WeightsError, OSError) as exc:
        where = {key: getattr(exc, key, None) for key in ("shard", "tensor")}
        module.fail_json(msg=str(exc), **{key: value for key, value in where.items() if value is not None})
    if not module._diff:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
