"""Upgrading a store of format version 3, 4 or 5 to version 6 (``casstore upgrade``).

Version 4 changed where a run's params, tags and metrics go (numbered batch records) and
holds a sealed run's manifest in its seal; version 5 keeps a sealed run's seal only (see
:mod:`casstore.runs.compact`); content objects are laid out as in version 3. So an
upgrade rewrites no content and no seal:

- from version 3, every run still open gets one batch record holding its params and tags
  (the params a newer writer checks new ones against; its metric segments stay where they
  are and are still read), and the search index is published with a summary of every run;
- on a local disk, every run whose seals all hold their manifests (sealed by version 4)
  is compacted: its meta record, batch records and manifest objects are removed, once its
  manifests are checked against their digests. Runs sealed by version 3 keep their records
  (their seals name a manifest object, which stays);
- ``casstore.json`` is written again with version 6 and its own check, last. A version-6
  store whose config has no check yet only gains the check.

Version 6 changes no record: it says that every writer names new run entries in time order
and notes a late one (see :mod:`casstore.runs.index`), which older casstore does not, so a
version-5 store is upgraded by writing its config again.

Run it while no other process writes to the store: a writer of an older casstore that
keeps writing after the upgrade would not follow the new format's rules. It refuses,
changing nothing, while it sees a writer (a live metric log, as ``gc --no-writers``). An upgrade
stopped halfway is run again: each step is idempotent, and the store keeps its old
version until the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from casstore.exceptions import CasstoreError, InvalidInputError, ObjectNotFoundError, StoreConfigError
from casstore.objects.config import CONFIG_KEY, FORMAT_VERSION, StoreConfig, read_config
from casstore.maintenance.gc import refuse_if_writing
from casstore.objects.codec import pack_checked
from casstore.runs import index, layout
from casstore.runs.batches import BATCHED_FROM, COMPACTED_FROM, Batch, batch_key, batch_number, batches_prefix, decode_batch
from casstore.runs.compact import holding_inline, remove_redundant
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
    #: sealed runs whose redundant records were removed (version 5 on a local disk)
    compacted: int = 0


def upgrade_store(runs: RunStore) -> UpgradeReport:
    """Upgrade ``runs``' store from format version 3, 4 or 5 to 6 (see the module's docstring)."""
    backend = runs.backend
    config = read_config(backend)
    if config.version >= FORMAT_VERSION:
        if config.checked:
            raise InvalidInputError(f"store {runs.url} already has format version {config.version}; nothing to upgrade")
        _write_config(runs, config)  # written before configs checked themselves: the same, with its check
        return UpgradeReport(config.version, config.version, 0, 0)
    refuse_if_writing(backend, "casstore upgrade", "nothing was changed. Upgrade once every writer has ended: a "
                      "writer that keeps the old format's rules after the upgrade can leave a record out of a seal.")
    if config.version < 3:
        raise StoreConfigError(
            f"store {runs.url} has format version {config.version}: casstore reads and writes it as it is, but "
            f"upgrades only versions 3 to 5 (whose content layout version {FORMAT_VERSION} keeps). Keep using it "
            "as it is."
        )
    opened, summaries = _batch_records(runs) if config.version < BATCHED_FROM else (0, 0)
    compacted = 0
    if backend.local and config.version < COMPACTED_FROM:
        compacted = sum(_compact(runs, run_id) for run_id in runs.list_run_ids())
    backend.flush()
    _write_config(runs, StoreConfig(version=FORMAT_VERSION, hash=config.hash, chunker=config.chunker,
                                     created=config.created, content_layout=config.content_layout))
    return UpgradeReport(config.version, FORMAT_VERSION, opened, summaries, compacted)


def _compact(runs: RunStore, run_id: str) -> int:
    """Remove what the seals of a run sealed at its current generation make redundant, if
    every seal holds its manifest and each manifest verifies; 1 if removed, else 0."""
    try:
        history = runs.seal_history(run_id)
        if not history or history[-1]["generation"] != runs.generation(run_id):
            return 0  # open
        if not all(isinstance(s.get("manifest"), bytes) for s in history):
            return 0  # sealed before version 4: its manifest object is its manifest
        for s in history:
            runs.read_manifest(run_id, str(s["digest"]), s)  # verified before anything goes
    except CasstoreError:
        return 0  # damaged: left as it is for `casstore verify` to name
    keys = list(runs.backend.list(layout.run_prefix(run_id)))
    top = max((n for k in keys if (n := batch_number(k)) is not None and k.startswith(batches_prefix(run_id))),
              default=0)
    holding = set()  # batches that hold inline content (or cannot be read) are kept
    for k in keys:
        n = batch_number(k) if k.startswith(batches_prefix(run_id)) else None
        if n is not None:
            try:
                holding |= holding_inline([decode_batch(runs.backend.get(k), k, n)])
            except CasstoreError:
                holding.add(n)
    return int(remove_redundant(runs.backend, run_id, keys, top, {str(s["digest"]) for s in history}, holding) > 0)


def _batch_records(runs: RunStore) -> tuple[int, int]:
    """Version 3 to 4: each open run's batch record, the index's first segment."""
    backend = runs.backend
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
    return opened, len(summaries)


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

