"""Store maintenance: garbage collection, verification and space accounting.

Library functions the ``casstore`` command wires; each works on an open store and
returns a report object (with ``to_dict()`` for JSON), so it is usable and testable
without the command line. The names below are loaded on first use, so verifying a
store does not load garbage collection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casstore._lazy import lazy_getattr

if TYPE_CHECKING:
    from casstore.maintenance.gc import DEFAULT_GRACE, GcReport, collect_garbage, format_duration, parse_duration

__all__ = [
    "DEFAULT_GRACE",
    "GcReport",
    "collect_garbage",
    "format_duration",
    "parse_duration",
]

if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(globals(), dict.fromkeys(__all__, "casstore.maintenance.gc"))
