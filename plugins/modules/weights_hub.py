#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_hub
short_description: Download a checkpoint with the ModelScope or Hugging Face client
version_added: "0.1.0"
description:
  - Runs C(modelscope download --model ID --local_dir DIR) or C(hf download ID --local-dir DIR)
    (C(huggingface-cli) takes the same words). Both clients skip files already complete and resume partial ones.
  - The token is passed to the client in its environment only (C(MODELSCOPE_API_TOKEN) or C(HF_TOKEN)), never in
    argv, and the option is marked C(no_log).
  - Always reports a change when it ran; callers run it only when the verified copy is missing.
options:
  source:
    description: Which hub.
    type: str
    choices: [modelscope, huggingface]
    required: true
  repo_id:
    description: Model id on the hub, for example C(vllm-ascend/GLM5-w8a8).
    type: str
    required: true
  dest:
    description: Local checkpoint directory.
    type: path
    required: true
  executable:
    description: Client executable (name on PATH or absolute path). Defaults to C(modelscope) or C(hf).
    type: str
  revision:
    description: Hub revision (branch, tag or commit).
    type: str
  token:
    description: Hub access token.
    type: str
  index_name:
    description: Index file name for the check behind O(done_marker); default the only C(*.safetensors.index.json).
    type: str
attributes:
  check_mode:
    description: Reports the argv it would run without running it.
extends_documentation_fragment:
  - ascend_ops.vllm.weights
  - ascend_ops.vllm.weights.done_marker
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Download GLM-5 w8a8 from ModelScope
  ascend_ops.vllm.weights_hub:
    source: modelscope
    repo_id: vllm-ascend/GLM5-w8a8
    dest: /root/.cache/modelscope/hub/models/vllm-ascend/GLM5-w8a8
    token: "{{ vault_modelscope_token }}"
"""

RETURN = r"""
cmd:
  description: The argv run (never holds the token).
  returned: success
  type: list
  elements: str
stdout_tail:
  description: Last lines the client printed.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import MarkedCopy, hub_argv, hub_env

DEFAULT_EXECUTABLE = {"modelscope": "modelscope", "huggingface": "hf"}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", required=True, choices=["modelscope", "huggingface"]),
            repo_id=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            executable=dict(type="str"),
            revision=dict(type="str"),
            token=dict(type="str", no_log=True),
            done_marker=dict(type="str"),
            index_name=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    executable = params["executable"] or DEFAULT_EXECUTABLE[params["source"]]
    found = module.get_bin_path(executable) if "/" not in executable else executable
    if not found:
        module.fail_json(msg="%s client %r is not on PATH; install it (pip install %s) or set executable"
                         % (params["source"], executable, params["source"] if params["source"] == "modelscope"
                            else "huggingface_hub"))
    argv = hub_argv(params["source"], found, params["repo_id"], params["dest"], params["revision"])
    if module.check_mode:
        module.exit_json(changed=True, cmd=argv, stdout_tail="")
    copy = MarkedCopy(module, params["dest"], params["done_marker"])
    if copy.marker:
        copy.start()
    rc, out, err = module.run_command(argv, environ_update=hub_env(params["source"], params["token"]))
    tail = "\n".join((out + err).strip().splitlines()[-20:])
    if rc != 0:
        copy.fail("%s exited %d while downloading %s into %s" % (argv[0], rc, params["repo_id"], params["dest"]),
                  cmd=argv, rc=rc, stdout_tail=tail)
    if copy.marker:
        copy.finish(params["index_name"], lambda exc: "%s downloaded %s into %s but the checkpoint is incomplete: %s"
                    % (argv[0], params["repo_id"], params["dest"], exc), cmd=argv, stdout_tail=tail)
    module.exit_json(changed=True, cmd=argv, stdout_tail=tail)


if __name__ == "__main__":
    main()
