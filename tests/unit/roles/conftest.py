"""Fixtures of the role tests (defined in role_stack, a uniquely named module)."""

from role_stack import stack  # noqa: F401  pytest fixture
