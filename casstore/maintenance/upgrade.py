"""Upgrading a store of format version 3 to version 4 (``casstore upgrade``).

Version 4 changes where a run's params, tags and metrics go (numbered batch records) and
holds a sealed run's manifest in its seal; content objects are laid out as in version 3.
So an upgrade rewrites no content and no sealed run: every run still open gets one batch
record holding its params and tags (the params a version-4 writer checks new ones against;
its metric segments stay where they are and are still read), the search index is published
with a summary of every run, and ``casstore.json`` is written again with version 4, last.

Run it while no other process writes to the store: a writer of an older casstore that
keeps writing per-key records after the upgrade would not have its params checked by the
writers of the new format. An upgrade stopped halfway is run again: each step is
idempotent, and the store keeps its old version until the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from casstore.exceptions import InvalidInputError, ObjectNotFoundError, StoreConfigError
from casstore.objects.config import CONFIG_KEY, StoreConfig, read_config
from casstore.objects.codec import pack_checked
from casstore.runs import index
from casstore.runs.batches import BATCHED_FROM, Batch, batch_key, batches_prefix
from casstore.runs.layout import now_ms
from casstore.runs.state import read_live_state
from casstore.runs.store import RunStore

__all__ = ["UpgradeReport", "upgrade_store"]


@dataclass(frozen=True)
class UpgradeReport:
    from_version: int
    to_version: int
    open_runs: int
    summaries: int


def upgrade_store(runs: RunStore) -> UpgradeReport:
    """Upgrade ``runs``' store from format version 3 to 4 (see the module's docstring)."""
    backend = runs.backend
    config = read_config(backend)
    if config.version >= BATCHED_FROM:
        if config.checked:
            raise InvalidInputError(f"store {runs.url} already has format version {config.version}; nothing to upgrade")
        _write_config(runs, config)  # written before configs checked themselves: the same, with its check
        return UpgradeReport(config.version, config.version, 0, 0)
    if config.version < 3:
        raise StoreConfigError(
            f"store {runs.url} has format version {config.version}: casstore reads and writes it as it is, but "
            "upgrades only version 3 (whose content layout version 4 keeps). Keep using it as it is."
        )
    opened = 0
    summaries = []
    for run_id in runs.list_run_ids():
        try:
            view = runs.get_run(run_id, flush=False)
        except ObjectNotFoundError:
            continue  # an index entry whose run never reached the disk
        if view.sealed or view.deleted:
            summaries.append(index.summary_of(view) if view.sealed else index.deletion_summary(run_id))
            continue
        if list(backend.list(batches_prefix(run_id))):
            continue  # done by an earlier try
        state = read_live_state(backend, run_id)
        meta_tags = state.meta.get("tags") or {}
        tags: list[tuple[str, str | None]] = [(k, v) for k, v in state.tags.items() if meta_tags.get(k) != v]
        g = runs.generation(run_id)
        backend.put_if_absent(batch_key(run_id, 1), Batch(1, dict(state.params), list(tags), time=now_ms(), g=g).to_bytes())
        opened += 1
    level = 0
    while index.FAN_IN ** (level + 1) <= len(summaries):
        level += 1
    if summaries:
        backend.put_if_absent(index.segment_key(level), pack_checked({"v": 1, "level": level, "runs": summaries}))
    backend.flush()
    _write_config(runs, StoreConfig(version=BATCHED_FROM, hash=config.hash, chunker=config.chunker,
                                    created=config.created, content_layout=config.content_layout))
    return UpgradeReport(config.version, BATCHED_FROM, opened, len(summaries))


def _write_config(runs: RunStore, new: StoreConfig) -> None:
    """Replace the store's config with ``new``: in one step where the lengths differ (a config
    gaining its check; :meth:`Backend.put_blob` replaces an object of another length), else
    removed and created again at once (there is no overwrite primitive)."""
    backend = runs.backend
    data = new.to_json()
    if len(backend.get(CONFIG_KEY)) == len(data):
        backend.delete(CONFIG_KEY)
    backend.put_blob(CONFIG_KEY, data)
    if backend.get(CONFIG_KEY) != data:
        raise StoreConfigError(f"store {runs.url}: another process wrote {CONFIG_KEY} during the upgrade; check it")
    backend.flush()

