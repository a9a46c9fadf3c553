# -*- coding: utf-8 -*-
# Copyright (c) ascend_ops.vllm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Documentation shared by the weights modules.

    ``ascend_ops.vllm.weights``: full check mode (each module still says what it does in check mode under
    ``attributes.check_mode.description``) and no diff.
    ``ascend_ops.vllm.weights.done_marker``: the completion marker option of the modules that fill a checkpoint
    directory other hosts copy from while it fills (weights_fetch, weights_hub, weights_pull; see MarkedCopy in
    plugins/module_utils/_weights_dist.py).
    """

    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Nothing to diff.
    support: none
"""

    DONE_MARKER = r"""
options:
  done_marker:
    description:
      - Completion marker name (a hidden file name starting with C(.ascend-ops-weights-)) for hosts that copy from
        this one while it is being filled (M(ascend_ops.vllm.weights_pull)).
      - When set, the finished copy is checked as M(ascend_ops.vllm.weights_verify) does (headers only) and
        C(<done_marker>.done) is written into the checkpoint directory saying C(ok), or C(failed) with the reason,
        so the hosts copying from this one finish or stop at once.
    type: str
"""
