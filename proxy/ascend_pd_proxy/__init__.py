"""Prefill/decode disaggregation proxy for vllm-ascend that routes around dead engines."""

__version__ = "0.1.0"
