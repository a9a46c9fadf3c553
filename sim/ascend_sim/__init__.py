"""Simulated Ascend node: a vLLM look-alike server, npu-smi and hccn_tool."""

__version__ = "0.1.0"
