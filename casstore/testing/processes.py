"""Helpers for tests and benchmarks that run work in other processes.

Free of pytest and hypothesis: spawned children and measured children import it.
"""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["run_racers", "peak_rss_mib"]


def run_racers(target: Callable[..., None], argsets: Sequence[tuple[Any, ...]], timeout: float = 180) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in one spawned process per ``args``.

    The processes share a barrier (for racing) and a queue on which each puts one
    report; the reports are returned in the order they arrived. A process still alive
    at the end is killed.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(argsets))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in argsets]
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def peak_rss_mib() -> float:
    """This process's own peak resident set, in MiB.

    Linux's ``VmHWM``: ``ru_maxrss`` would also count the parent's resident set at
    fork time, which Linux carries over ``exec``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
