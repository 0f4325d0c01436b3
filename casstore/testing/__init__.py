"""Test helpers shipped with casstore: the backend conformance suite and hypothesis strategies.

``casstore.testing.conformance.BackendConformance`` is what a new backend must pass;
``casstore.testing.strategies`` holds the shared hypothesis strategies. Both need
the test extra: ``pip install 'casstore[test]'``. ``casstore.testing.processes`` helps
run and measure work in other processes (no extra needed).
"""

from __future__ import annotations

import sys

if "pytest" in sys.modules:  # under pytest: plain asserts in the suite report their operands
    sys.modules["pytest"].register_assert_rewrite("casstore.testing.conformance")

__all__: list[str] = []
