#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_progress
short_description: Watch a running weights transfer and report its bytes and percent
version_added: "0.1.0"
description:
  - Read-only. Sums the bytes of every file under O(path) (partial files included) and compares them with
    O(expected_bytes).
  - Blocks until the async job O(jid) has finished, or the copy reached O(until_percent), or O(wait) seconds passed,
    so a short loop of this task prints a progress line per step while the transfer runs.
  - Fails with the job's message once the job O(jid) has failed, so a failed transfer stops the play at the step
    that sees it (no separate C(async_status) round is needed for a job reported finished).
options:
  path:
    description: Directory being filled.
    type: path
    required: true
  expected_bytes:
    description: Size of the complete copy; 0 when unknown (no percent then).
    type: int
    default: 0
  jid:
    description: Async job id of the transfer (the C(ansible_job_id) of an C(async)/C(poll 0) task on this host).
    type: str
  async_dir:
    description: Directory holding async job results on this host.
    type: path
    default: ~/.ansible_async
  until_percent:
    description:
      - Return as soon as the copy has reached this percent.
      - 100 with O(jid) waits for the job to finish (it still checks the copy after the last byte).
    type: float
    default: 100.0
  wait:
    description: Longest time to block, in seconds.
    type: int
    default: 60
  interval:
    description: Seconds between two looks.
    type: float
    default: 1.0
attributes:
  check_mode:
    description: Read-only.
extends_documentation_fragment:
  - ascend_ops.vllm.weights
author:
  - ascend_ops.vllm maintainers (@ascend-ops)
"""

EXAMPLES = r"""
- name: Report the copy in 25 % steps
  ascend_ops.vllm.weights_progress:
    path: /root/.cache/GLM5-w8a8
    expected_bytes: 773094113280
    jid: "{{ copy_job.ansible_job_id }}"
    until_percent: "{{ item }}"
    wait: 600
  loop: [25, 50, 75, 100]
"""

RETURN = r"""
bytes:
  description: Bytes under O(path).
  returned: always
  type: int
files:
  description: Files under O(path).
  returned: always
  type: int
percent:
  description: Bytes as a percent of O(expected_bytes) (capped at 100), or null.
  returned: always
  type: float
finished:
  description: Whether the async job O(jid) has finished (true when no O(jid) is given).
  returned: always
  type: bool
msg:
  description: One line for a progress report.
  returned: always
  type: str
"""

import json
import os
import time
from typing import Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ascend_ops.vllm.plugins.module_utils._weights_dist import tree_bytes


def job_state(async_dir: str, jid: Optional[str]) -> tuple[bool, dict]:
    """(finished, result) of an async job, read as async_status reads it: finished once its result file no
    longer says started; the result is the module's own once finished."""
    if not jid:
        return True, {}
    try:
        with open(os.path.join(async_dir, jid), encoding="utf-8") as fp:
            data = json.load(fp)
    except FileNotFoundError:
        return False, {}
    except ValueError:
        return False, {}  # being written
    finished = not data.get("started") or bool(data.get("finished"))
    return finished, data if finished else {}


def job_finished(async_dir: str, jid: Optional[str]) -> bool:
    return job_state(async_dir, jid)[0]


def percent_of(done: int, expected: int) -> Optional[float]:
    return round(min(100.0, 100.0 * done / expected), 1) if expected > 0 else None


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            expected_bytes=dict(type="int", default=0),
            jid=dict(type="str"),
            async_dir=dict(type="path", default="~/.ansible_async"),
            until_percent=dict(type="float", default=100.0),
            wait=dict(type="int", default=60),
            interval=dict(type="float", default=1.0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    deadline = time.monotonic() + max(0, params["wait"])
    async_dir = params["async_dir"]  # type path: already expanded
    while True:
        finished, job = job_state(async_dir, params["jid"])
        done, files = tree_bytes(params["path"])
        percent = percent_of(done, params["expected_bytes"])
        reached = (percent is not None and percent >= params["until_percent"]
                   and (params["until_percent"] < 100.0 or not params["jid"]))
        if finished or reached or time.monotonic() >= deadline:
            break
        time.sleep(params["interval"])
    if finished and job.get("failed"):
        module.fail_json(msg="the transfer into %s failed: %s" % (params["path"], job.get("msg", job)),
                         bytes=done, files=files, percent=percent, finished=True)
    shown = "%.1f MiB" % (done / 1048576.0)
    if percent is not None:
        shown += " of %.1f MiB (%.1f%%)" % (params["expected_bytes"] / 1048576.0, percent)
    module.exit_json(changed=False, bytes=done, files=files, percent=percent, finished=finished,
                     msg="%s: %s%s" % (params["path"], shown, ", done" if finished else ""))


if __name__ == "__main__":
    main()
