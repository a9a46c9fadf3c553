"""Fixtures of tests/simctl live in simctl_support.py (a unique module name: several test folders have helpers)."""

from simctl_support import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
