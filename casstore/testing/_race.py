"""Child-process side of the conformance suite's multi-process race (imported by spawn).

Kept free of pytest and hypothesis so that a spawned child starts quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from casstore.backend.base import Backend


def put_if_absent_worker(
    factory: Callable[[], Backend],
    keys: Sequence[str],
    token: bytes,
    barrier: Any,
    results: Any,
) -> None:
    """Open the store with ``factory``; for each key, wait for every racer, then try to
    create it holding ``token``. Report ``(token, [won, ...], error)`` on ``results``."""
    won: list[bool] = []
    try:
        backend = factory()
        try:
            for key in keys:
                barrier.wait(timeout=120)
                won.append(backend.put_if_absent(key, token))
        finally:
            backend.close()
    except BaseException as e:  # report it: the parent fails the test with the reason
        barrier.abort()
        results.put((token, won, f"{type(e).__name__}: {e}"))
        return
    results.put((token, won, None))
