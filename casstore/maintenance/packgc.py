"""Garbage collection of packs: live fraction per pack, repacking, and the grace protocol.

In a store of the packs layout a chunk cannot be deleted alone: a pack goes whole. Each
gc run (see :mod:`casstore.maintenance.gc`) then:

- reads every index (and the header of each pack no index lists) and counts, per pack,
  the bytes of its chunks that are live: reachable from the roots, or referenced by any
  recipe or model entry still stored (a conservative rule: such a recipe's chunks count
  until the recipe itself is gone);
- **repacks** each pack whose live fraction is below :data:`REPACK_BELOW`: its live
  chunks, read through the pack's own header and each verified against its digest, are
  written into new packs with their index (pack, barrier, index), after which the old
  pack holds nothing that is not elsewhere;
- **marks** the packs with no live chunk and the packs just repacked, in the candidates
  record, as for any content object;
- **sweeps** the packs of candidates records written at least ``grace`` ago: a pack goes
  only if its modification time is still before the mark (a writer that deduplicated
  against one of its chunks after seeing the mark freshened it, and a writer that stored
  the very same pack again freshened it too), and if each of its chunks live now is in
  another pack that stays.
  Deletion is :meth:`Backend.delete_if_stale`, exact on local and memory stores;
- rewrites the index objects that list a deleted pack, this run's or one a stopped run
  deleted (the new index first, then the old one goes), so readers stop looking for it
  and writers stop reusing it; only then are the swept candidates records removed. A
  reader that still looks for it (an index read before) finds the pack missing, reads the
  indexes again and finds the chunk's new place;
- **folds** the small index objects (a writer publishes one per run that logs a file) into
  few of up to :data:`FOLD_ENTRIES` entries, new ones first, in a run that replaced none,
  so a new machine reads a handful of index objects, not one per run ever logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casstore.backend.base import Backend
from casstore.exceptions import CasstoreError, ObjectNotFoundError
from casstore.objects.digest import hash_bytes
from casstore.objects.layout import PACKS, ContentLayout
from casstore.objects.packs import (
    INDEX_PREFIX, Entries, Location, PackIndex, PackWriter, coalesce, encode_index, read_pack_header,
)

__all__ = ["REPACK_BELOW", "FOLD_ENTRIES", "PackPlan", "load_packs", "plan_packs", "repack", "sweep_packs", "rewrite_indexes",
           "fold_indexes"]

log = logging.getLogger(__name__)

#: a pack whose live bytes are below this fraction of its chunks' bytes is repacked
REPACK_BELOW = 0.5


@dataclass
class PackPlan:
    """What the live fractions say: packs to mark as they are, packs to repack first."""

    dead: list[str] = field(default_factory=list)
    repack: list[str] = field(default_factory=list)
    live_bytes: int = 0
    total_bytes: int = 0


def load_packs(backend: Backend, layout: ContentLayout) -> tuple[PackIndex, set[str]]:
    """The merged index of the store's packs (every index read, and the header of each pack
    none lists), and the index objects that list a pack the store no longer holds. The
    index may know packs written after the store was listed: gc plans only for the packs of
    its listing, and keeps every pack it did not list. A pack an index still lists but the
    store no longer holds (a gc stopped before it replaced that index) is forgotten, so it
    never counts as another home of a live chunk, and its index objects are to be replaced
    (:func:`rewrite_indexes`)."""
    index = PackIndex(backend, layout)
    index.load()
    stored = {parsed[1] for k in backend.list(PACKS + "/") if (parsed := layout.parse(k)) is not None and parsed[0] == PACKS}
    missing = set(index.packs) - stored
    stale = {d for d, packs in index.indexes.items() if missing.intersection(packs)}
    for p in sorted(missing):
        index.forget_pack(p)
    return index, stale


def plan_packs(index: PackIndex, live: set[str], listed: set[str]) -> PackPlan:
    """Live fractions of the packs of ``listed`` (the store's listing) that ``index`` knows."""
    plan = PackPlan()
    for p in sorted(listed & set(index.packs)):
        entries = index.entries(p)
        total = sum(n for _, _, n in entries)
        used = sum(n for d, _, n in entries if d in live)
        plan.total_bytes += total
        plan.live_bytes += used
        if used == 0:
            plan.dead.append(p)
        elif used < REPACK_BELOW * total:
            plan.repack.append(p)
    return plan


def repack(backend: Backend, layout: ContentLayout, index: PackIndex, packs: list[str], live: set[str]) -> list[str]:
    """Copy the live chunks of ``packs`` into new packs and publish their index; return the
    packs whose live chunks are all elsewhere now. A pack whose header or a live chunk is
    damaged is left as it is (and named in the log): it is never marked."""
    writer = PackWriter(backend, layout, index)
    done = []
    try:
        for p in packs:
            key = layout.pack_key(p)
            try:
                _size, entries = read_pack_header(backend, key)  # the pack's own word, not an index's
                wanted = [(d, n, Location(p, off, n)) for d, off, n in entries if d in live]
                copied: list[tuple[str, bytes]] = []
                for span in coalesce(wanted):
                    first, last = span[0][2], span[-1][2]
                    assert first is not None and last is not None
                    raw = backend.get_range(key, first.offset, last.offset + last.length)
                    for d, n, loc in span:
                        assert loc is not None
                        piece = raw[loc.offset - first.offset : loc.offset - first.offset + n]
                        if hash_bytes(piece, parallel=False) != d:
                            raise CasstoreError(f"chunk {d} in pack {key} does not match its digest")
                        copied.append((d, piece))
            except (CasstoreError, ObjectNotFoundError) as e:
                log.warning("not repacking %s: %s", key, e)
                continue
            for d, piece in copied:
                writer.add(d, piece, copy=True)
            done.append(p)
        writer.publish()
    finally:
        writer.close()
    return done


def sweep_packs(
    backend: Backend, layout: ContentLayout, index: PackIndex, due: dict[str, float], live: set[str],
    slack: float, dry_run: bool,
) -> tuple[set[str], int, int]:
    """Delete the packs of ``due`` (pack -> mark time) whose grace is over: unchanged since
    marked, every live chunk in another pack that stays. Returns the packs deleted, their
    bytes, and how many were kept."""
    homes: dict[str, set[str]] = {}
    for p in index.packs:
        for d, _, _ in index.entries(p):
            homes.setdefault(d, set()).add(p)
    gone: set[str] = set()
    freed = kept = 0
    for p in sorted(due):
        if p not in index.packs:
            continue
        leaving = gone | {p}
        if any(d in live and not (homes.get(d, set()) - leaving) for d, _, _ in index.entries(p)):
            kept += 1  # a live chunk with no other home: the pack stays (repacked next run)
            continue
        key = layout.pack_key(p)
        limit = due[p] - slack
        try:
            info = backend.info(key)
        except ObjectNotFoundError:
            continue
        if info.mtime >= limit:
            kept += 1  # freshened since marked: a writer deduplicated against it, or stored it again
            continue
        if dry_run or backend.delete_if_stale(key, limit):
            gone.add(p)
            freed += info.size
        else:
            kept += 1
    return gone, freed, kept


def rewrite_indexes(backend: Backend, index: PackIndex, gone: set[str], stale: set[str] | None = None) -> int:
    """Replace each index object that lists a pack this gc run deleted (``gone``), and each
    of ``stale`` (listing a pack deleted before, see :func:`load_packs`): the new index (of
    the other packs it lists) first, then the old one is deleted. An index that lists no
    deleted pack is left alone, whatever it lists (a writer's new packs). Returns how many
    were replaced."""
    replaced = 0
    listed, stale = index.indexes, stale or set()
    for digest in sorted(set(listed) | stale):
        packs = listed.get(digest, [])
        if digest not in stale and not any(p in gone for p in packs):
            continue
        remaining = [(p, index.packs[p], index.entries(p)) for p in packs if p not in gone and p in index.packs]
        if remaining:
            data = encode_index(remaining)
            backend.put_blob(INDEX_PREFIX + hash_bytes(data), data)
        backend.flush()
        backend.delete(INDEX_PREFIX + digest)
        replaced += 1
    return replaced


#: gc folds the index objects of fewer entries than this into new ones of up to this many
#: (restic writes an index at 50,000 entries): a writer publishes one index object per
#: publish (a run that logs a file makes one), and a new machine reads each once, one GET each
FOLD_ENTRIES = 50_000


def fold_indexes(backend: Backend, index: PackIndex) -> tuple[int, int]:
    """Replace the small index objects ``index`` loaded (fewer than :data:`FOLD_ENTRIES`
    entries each) by as few as hold their packs: the new ones first, then the old ones are
    deleted, as :func:`rewrite_indexes` does. A reader that listed an old one just before it
    went finds it missing and describes its packs from their headers. Returns how many
    index objects went and how many were written (0, 0 when folding would not make fewer)."""
    small: list[str] = []
    batches: list[list[tuple[str, int, Entries]]] = [[]]
    seen: set[str] = set()
    filled = 0
    for digest, packs in sorted(index.indexes.items()):
        entries = [(p, index.entries(p)) for p in packs if p in index.packs]
        if sum(len(es) for _, es in entries) >= FOLD_ENTRIES:
            continue
        small.append(digest)
        for p, es in entries:
            if p in seen:
                continue
            seen.add(p)
            if batches[-1] and filled + len(es) > FOLD_ENTRIES:
                batches.append([])
                filled = 0
            batches[-1].append((p, index.packs[p], es))
            filled += len(es)
    written = [b for b in batches if b]
    if len(written) >= len(small):
        return 0, 0
    for batch in written:
        data = encode_index(batch)
        backend.put_blob(INDEX_PREFIX + hash_bytes(data), data)
    backend.flush()
    for digest in small:
        backend.delete(INDEX_PREFIX + digest)
    return len(small), len(written)
