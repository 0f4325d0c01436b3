"""Store maintenance: garbage collection, verification and space accounting.

Library functions the ``casstore`` command wires; each works on an open store and
returns a report object (with ``to_dict()`` for JSON), so it is usable and testable
without the command line.
"""

from __future__ import annotations

from casstore.maintenance.gc import DEFAULT_GRACE, GcReport, collect_garbage, format_duration, parse_duration

__all__ = [
    "DEFAULT_GRACE",
    "GcReport",
    "collect_garbage",
    "format_duration",
    "parse_duration",
]
