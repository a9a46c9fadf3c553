#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_pull
short_description: Copy a checkpoint from another host with rsync over ssh, following a copy still being written
version_added: "0.1.0"
description:
  - Runs on the receiving host and pulls O(path) from O(source_address) with rsync over ssh (the source exposes the
    directory read-only through C(rrsync -ro)).
  - Without O(source_marker) the source already holds a complete, checked copy and one pass copies it.
  - With O(source_marker) the source is still being filled (a download or another pull). Every O(interval) seconds a
    pass takes each file that is complete there, so this copy runs right behind the source's instead of after it.
    When the source's completion marker says it is done, a final pass takes the rest and, last, the index.
  - Hidden files, C(*.part) and C(*.incomplete) files are never copied; partial files wait in a hidden partial
    directory, so a file under its own name is always whole and an interrupted copy resumes.
  - Then the copy is checked (every shard the index names exists, its header parses, the mapped tensors are in it,
    as M(ascend_ops.vllm.weights_verify) does) and, with O(done_marker), this host writes its own completion marker
    for the hosts that pull from it (C(ok), or C(failed) with the reason, so they stop at once).
  - Meant to run with C(async) and be watched with M(ascend_ops.vllm.weights_progress).
options:
  path:
    description: Checkpoint directory on this host; the same directory is read on the source.
    type: path
    required: true
  source_address:
    description: Address of the source host.
    type: str
    required: true
  source_name:
    description: Name of the source host in messages. Defaults to O(source_address).
    type: str
  user:
    description: Account on the source whose C(authorized_keys) lets O(identity_file) run C(rrsync -ro).
    type: str
    default: root
  identity_file:
    description: Private key of this host for the source; the ssh control socket is kept next to it.
    type: path
    required: true
  known_hosts_file:
    description: File pinning the source's host key (host key checking is strict).
    type: path
    required: true
  index_name:
    description: File name of the index, copied last.
    type: str
    default: model.safetensors.index.json
  source_marker:
    description:
      - Completion marker name of the source (a hidden file name starting with C(.ascend-ops-weights-)).
      - Omit when the source already holds a complete, checked copy.
    type: str
  interval:
    description: Seconds between two passes while the source is being filled.
    type: float
    default: 2.0
  stall_timeout:
    description: Fail when no new file arrived from an unfinished source for this many seconds.
    type: int
    default: 1800
  rsync:
    description: rsync executable on this host.
    type: str
    default: rsync
attributes:
  check_mode:
    description: Reports that it would copy; contacts nothing.
extends_documentation_fragment:
  - ascend_ops.vllm.weights
  - ascend_ops.vllm.weights.done_marker
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Follow node0's download of the checkpoint
  ascend_ops.vllm.weights_pull:
    path: /root/.cache/GLM5-w8a8
    source_address: 10.0.0.10
    source_name: node0
    identity_file: /root/.ssh/ascend_ops_weights/id_ed25519
    known_hosts_file: /root/.ssh/ascend_ops_weights/known_hosts
    source_marker: .ascend-ops-weights-20260101T000000-node0
  async: 172800
  poll: 0
  register: pull_job
"""

RETURN = r"""
files:
  description: Files copied by this run.
  returned: success
  type: list
  elements: str
bytes_pulled:
  description: Bytes of the files copied by this run.
  returned: success
  type: int
passes:
  description: rsync passes run.
  returned: success
  type: int
seconds:
  description: Time the copy took.
  returned: success
  type: float
shard_count:
  description: Shards checked after the copy.
  returned: success
  type: int
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import (
    MarkedCopy,
    PullError,
    check_marker_option,
    pull_checkpoint,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            source_address=dict(type="str", required=True),
            source_name=dict(type="str"),
            user=dict(type="str", default="root"),
            identity_file=dict(type="path", required=True),
            known_hosts_file=dict(type="path", required=True),
            index_name=dict(type="str", default="model.safetensors.index.json"),
            source_marker=dict(type="str"),
            done_marker=dict(type="str"),
            interval=dict(type="float", default=2.0),
            stall_timeout=dict(type="int", default=1800),
            rsync=dict(type="str", default="rsync"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"].rstrip("/") or "/"
    source_name = params["source_name"] or params["source_address"]
    check_marker_option(module, "source_marker", params["source_marker"])
    copy = MarkedCopy(module, path, params["done_marker"])
    if module.check_mode:
        module.exit_json(changed=True, files=[], bytes_pulled=0, passes=0, seconds=0.0,
                         msg="would copy %s from %s" % (path, source_name))
    rsync = params["rsync"] if "/" in params["rsync"] else module.get_bin_path(params["rsync"])
    if not rsync:
        module.fail_json(msg="rsync %r is not on PATH on this host; install rsync or set model_weights_rsync_bin"
                         % params["rsync"])
    control = os.path.join(os.path.dirname(params["identity_file"]), "cm-%C")
    # One ssh connection for every pass (ControlMaster); StrictHostKeyChecking against the pinned key only.
    ssh = ["ssh", "-i", params["identity_file"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + params["known_hosts_file"],
           "-o", "ControlPath=" + control]
    rsh = " ".join(ssh + ["-o", "ControlMaster=auto", "-o", "ControlPersist=60", "-o", "ServerAliveInterval=15"])
    target = "%s@%s" % (params["user"], params["source_address"])
    copy.start()

    def describe(exc: Exception) -> str:
        return "copy of %s from %s failed: %s" % (path, source_name, exc)

    def describe_marker(exc: Exception) -> str:
        return "copy from %s: %s" % (source_name, exc)

    try:
        result = pull_checkpoint(rsync, rsh, target + ":./", source_name, path, params["index_name"],
                                 params["source_marker"], params["interval"], params["stall_timeout"])
    except (PullError, OSError) as exc:
        copy.fail(describe(exc), describe_marker(exc))
    finally:
        subprocess.run(ssh + ["-O", "exit", target], capture_output=True, check=False)
    verified = copy.finish(params["index_name"], describe, describe_marker)
    module.exit_json(changed=bool(result.files), files=result.files, bytes_pulled=result.bytes_pulled,
                     passes=result.passes, seconds=result.seconds, shard_count=verified["shard_count"])


if __name__ == "__main__":
    main()
