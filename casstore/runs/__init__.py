"""The runs layer: experiments, runs, their records, metrics batches and the seal.

Below the tracking API and the models; it speaks in digests and records and uses
only the objects and backend layers. See docs/design.md ("Runs") for the layout.
"""

from __future__ import annotations

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
