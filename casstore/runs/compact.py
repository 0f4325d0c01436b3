"""A sealed run keeps its seal only (store format version 5, on a local disk).

A run's seal holds its whole manifest (meta, params, tags, metric points, artifacts,
models, inputs), so once the seal is durable the records it was made from are
redundant: the meta record, the batch records numbered up to the closing one but those
holding the content of inline artifacts bound in batches (a manifest names an artifact
by digest only), their witness records (and the per-key records of a run begun before version 4; ``casstore upgrade`` also removes the
manifest objects version 4 wrote beside its seals). The writer that seals a run removes
them, and a sealed run is then one directory holding its ``seal`` (and the binding
records of its artifacts, models and inputs, if it has any) where it was a directory
and half a dozen files, each taking at least one block of the file system.

Every state in between is read as the sealed run: readers take a sealed run from its
seal, whatever else is there; a reader of an open run that finds a record listed and
then gone reads the seal instead (:class:`~casstore.runs.state.BatchVanished`).

Why writers stay exact although numbers are given back: removing batch records frees
numbers below the close, so a writer whose listing predates the seal may create a
batch under a number the seal has folded and that is gone since. So on a store that
compacts, a writer checks after each batch it creates whether the seal of its
generation exists: if it does, the batch counts only if the seal names it (``folded``:
each folded batch's number and the BLAKE3 of its bytes); otherwise the write is
refused (and the stray batch, numbered at most the seal's ``top``, removed). If the
seal does not exist when the writer checks, nothing of this generation has been removed
yet, and the numbering argument of version 4 holds as it is (docs/design.md, "Runs").
A resumed run numbers its batches after the seal it follows (``top``), never into the
freed numbers, and its fold starts from that seal's state.

Only backends whose objects cost a block each compact (``Backend.local``:
the local disk and memory): on S3 an object costs no block, and the removal and the
writers' check would cost requests.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from casstore.backend.base import Backend
from casstore.runs.batches import Batch, batch_number, batches_prefix, witness_prefix
from casstore.runs.layout import manifest_key, run_meta_key, run_prefix

__all__ = ["holding_inline", "redundant_keys", "remove_redundant"]


def redundant_keys(run_id: str, keys: Iterable[str], top: int, manifests: Collection[str] = (),
                   holding: Collection[int] = ()) -> list[str]:
    """Those of a sealed run's ``keys`` that its seal (folding batches up to ``top``) makes
    redundant: the meta record, the batches numbered up to ``top`` but those numbered in
    ``holding`` (batches that hold the content of inline artifacts, which a manifest names
    by digest only), the witness records of its batches, the per-key params, tags and metric
    segments of a run begun before version 4, and the manifest objects of the digests
    ``manifests`` (those a seal holds: a seal written before version 4 does not)."""
    meta, batches, witnesses = run_meta_key(run_id), batches_prefix(run_id), witness_prefix(run_id)
    per_key = tuple(run_prefix(run_id) + kind for kind in ("params/", "tags/", "metrics/"))
    held = {manifest_key(run_id, d) for d in manifests}
    out = []
    for k in keys:
        if k == meta or k in held or k.startswith(per_key):
            out.append(k)
        elif k.startswith(batches) and (n := batch_number(k)) is not None and n <= top and n not in holding:
            out.append(k)
        elif k.startswith(witnesses) and (n := batch_number(k, "last-")) is not None and n <= top:
            out.append(k)
    return out


def holding_inline(batches: Iterable[Batch]) -> set[int]:
    """The numbers of the batches that hold the content of an inline artifact."""
    return {b.n for b in batches if any(a[5] is not None for a in b.artifacts)}


def remove_redundant(backend: Backend, run_id: str, keys: Iterable[str], top: int, manifests: Collection[str] = (),
                     holding: Collection[int] = ()) -> int:
    """Remove the records of a sealed run that its seal makes redundant (the seal must be
    durable first); return how many were removed. The meta record goes last: until it
    goes, the run looks as it did to tools that do not read seals."""
    doomed = redundant_keys(run_id, keys, top, manifests, holding)
    doomed.sort(key=lambda k: k == run_meta_key(run_id))
    for k in doomed:
        backend.delete(k)
    return len(doomed)
