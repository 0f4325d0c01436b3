"""Test helpers shipped with casstore: the backend conformance suite and hypothesis strategies.

``casstore.testing.conformance.BackendConformance`` is what a new backend must pass;
``casstore.testing.strategies`` holds the shared hypothesis strategies. Both need
the test extra: ``pip install 'casstore[test]'``.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("pytest") is not None:  # pragma: no branch
    import pytest

    # plain asserts in the shipped suite report their operands, as in a test module
    pytest.register_assert_rewrite("casstore.testing.conformance")

__all__: list[str] = []
