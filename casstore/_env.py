"""Switches read from the environment."""

from __future__ import annotations

import os

__all__ = ["env_on"]


def env_on(name: str) -> bool:
    """Whether the switch ``name`` is on: it is unless set to ``0``, ``false``, ``no`` or
    ``off`` (any case, spaces around ignored)."""
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")
