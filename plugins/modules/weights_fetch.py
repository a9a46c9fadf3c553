#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_fetch
short_description: Download a safetensors checkpoint from a plain HTTP(S) mirror
version_added: "0.1.0"
description:
  - Reads the index from O(url), then fetches the side files, every shard the index's C(weight_map) names and, last,
    the index itself into O(dest). A complete index therefore means a complete download.
  - Each file is written to C(<name>.part) and renamed once its size equals the mirror's C(Content-Length).
    An interrupted run resumes with an HTTP Range request when the server honours it, else refetches that file.
  - Files whose local size already equals the mirror's are not fetched, so a rerun on a complete copy changes nothing.
  - The token, when given, is only sent as an C(Authorization) header; it is never logged.
options:
  url:
    description: Base URL of the mirror directory holding the checkpoint.
    type: str
    required: true
  dest:
    description: Local checkpoint directory.
    type: path
    required: true
  index_name:
    description: File name of the index on the mirror.
    type: str
    default: model.safetensors.index.json
  files:
    description: Side files that must exist on the mirror (config, tokenizer).
    type: list
    elements: str
    default: [config.json]
  optional_files:
    description: Side files fetched when the mirror has them (HTTP 404 is accepted).
    type: list
    elements: str
    default: []
  token:
    description: Bearer token for the mirror.
    type: str
  timeout:
    description: Socket timeout in seconds per request.
    type: int
    default: 60
attributes:
  check_mode:
    description: Asks the mirror for sizes (HEAD) and reports what would be fetched and the total bytes.
extends_documentation_fragment:
  - ascend_ops.vllm.weights
  - ascend_ops.vllm.weights.done_marker
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Fetch the checkpoint from the site mirror
  ascend_ops.vllm.weights_fetch:
    url: http://mirror.example/GLM5-w8a8/
    dest: /root/.cache/GLM5-w8a8
    optional_files: [tokenizer.json, tokenizer_config.json, generation_config.json]
"""

RETURN = r"""
fetched:
  description: Files downloaded (or that would be, in check mode).
  returned: success
  type: list
  elements: str
skipped_optional:
  description: Optional files the mirror does not have.
  returned: success
  type: list
  elements: str
bytes_fetched:
  description: Bytes transferred by this run.
  returned: success
  type: int
expected_bytes:
  description: Total size of every file of the checkpoint on the mirror.
  returned: success
  type: int
files:
  description: Number of files the checkpoint has on the mirror.
  returned: success
  type: int
"""

from dataclasses import asdict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import (
    FetchError,
    MarkedCopy,
    Mirror,
    fetch_checkpoint,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            index_name=dict(type="str", default="model.safetensors.index.json"),
            files=dict(type="list", elements="str", default=["config.json"]),
            optional_files=dict(type="list", elements="str", default=[]),
            token=dict(type="str", no_log=True),
            timeout=dict(type="int", default=60),
            done_marker=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    copy = MarkedCopy(module, params["dest"], params["done_marker"] if not module.check_mode else None)
    if copy.marker:
        copy.start()

    def describe(exc: Exception) -> str:
        return "weights_fetch into %s: %s" % (params["dest"], exc)

    mirror = Mirror(params["url"], params["token"], params["timeout"])
    try:
        result = fetch_checkpoint(mirror, params["dest"], params["index_name"], params["files"],
                                  params["optional_files"], module.check_mode)
    except (FetchError, OSError) as exc:
        copy.fail(describe(exc))
    if copy.marker:
        copy.finish(params["index_name"], describe)
    module.exit_json(changed=bool(result.fetched), **asdict(result))


if __name__ == "__main__":
    main()
