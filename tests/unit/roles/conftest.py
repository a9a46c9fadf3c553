"""Fixtures of the role tests (defined in role_stack, a uniquely named module)."""

from role_stack import stack

__all__ = ["stack"]  # re-exported so pytest finds the fixture
