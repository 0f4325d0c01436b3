"""The runs layer: experiments, runs, their records, metrics batches and the seal.

Below the tracking API and the models; it speaks in digests and records and uses
only the objects and backend layers. See docs/design.md ("Runs") for the layout.
The names below are loaded on first use, so reading a store does not load writing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casstore._lazy import lazy_getattr

if TYPE_CHECKING:
    from casstore.runs.handle import RUN_STATUSES, RunHandle
    from casstore.runs.layout import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, name_key
    from casstore.runs.records import ArtifactEntry, Experiment, ModelRef, RunView
    from casstore.runs.store import RunStore, open_run_store

__all__ = [
    "RunStore",
    "RunHandle",
    "open_run_store",
    "ArtifactEntry",
    "ModelRef",
    "RunView",
    "Experiment",
    "RUN_STATUSES",
    "DEFAULT_EXPERIMENT_ID",
    "DEFAULT_EXPERIMENT_NAME",
    "name_key",
]

if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(globals(), {
        **dict.fromkeys(("RunStore", "open_run_store"), "casstore.runs.store"),
        **dict.fromkeys(("RUN_STATUSES", "RunHandle"), "casstore.runs.handle"),
        **dict.fromkeys(("DEFAULT_EXPERIMENT_ID", "DEFAULT_EXPERIMENT_NAME", "name_key"), "casstore.runs.layout"),
        **dict.fromkeys(("ArtifactEntry", "Experiment", "ModelRef", "RunView"), "casstore.runs.records"),
    })
