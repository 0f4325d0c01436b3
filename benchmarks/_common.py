"""Helpers shared by the benchmark scripts (run as scripts, so this directory is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path


def dir_size(path: Path) -> int:
    """Bytes in the files under ``path`` (files that vanish while walking count as 0)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except FileNotFoundError:
                pass
    return total
