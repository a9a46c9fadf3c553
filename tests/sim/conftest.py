"""Fixtures of tests/sim live in sim_support.py (a unique module name: several test folders have helpers)."""

from sim_support import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
