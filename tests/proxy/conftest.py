"""Fixtures of tests/proxy live in proxy_support.py (a unique module name: several test folders have helpers)."""

from proxy_support import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
