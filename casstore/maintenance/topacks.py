"""Converting a store of loose chunks to the packs layout, in place and resumably.

:func:`convert_to_packs` does, in order:

1. copies every loose chunk that no pack holds yet into packs, each chunk read and
   verified against its digest first (a damaged chunk is named and left as it is),
   publishing each batch's packs with their index (pack, barrier, index);
2. rewrites ``casstore.json`` with ``"layout": "packs"`` (nothing else changes: the
   chunker stays, so new content still deduplicates against the old), read back and
   checked; from then on casstore writes new chunks into packs, and casstore that
   predates packs refuses the store;
3. copies again the loose chunks that writers opened before the switch stored meanwhile;
4. deletes each loose chunk once the pack that holds it has been read back and the
   chunk's bytes there verified.

Every step is idempotent: a conversion killed at any point is resumed by running it
again, which packs only what no pack holds yet. A reader finds a chunk in a pack or,
failing that, as a loose object, so the store reads whole at every point.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from casstore.backend.base import Backend
from casstore.exceptions import ObjectNotFoundError, StoreConfigError
from casstore.objects.config import CONFIG_KEY, StoreConfig, read_config
from casstore.objects.digest import hash_bytes
from casstore.objects.packs import PACK_TARGET, PackIndex, PackWriter

__all__ = ["ConversionReport", "convert_to_packs"]

log = logging.getLogger(__name__)

#: packs published (with their index) per batch: what a killed conversion does again at most
_BATCH_BYTES = 8 * PACK_TARGET

Progress = Callable[[str, int, int | None], None]


@dataclass
class ConversionReport:
    already_packed: int = 0
    packed_chunks: int = 0
    packed_bytes: int = 0
    packs_written: int = 0
    config_switched: bool = False
    loose_deleted: int = 0
    damaged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pack_loose(backend: Backend, config: StoreConfig, index: PackIndex, report: ConversionReport,
                tick: Callable[..., None]) -> None:
    layout = config.layout
    loose = sorted(set(layout.stored(backend, "chunks")))
    todo = [d for d in loose if index.get(d) is None]
    report.already_packed += len(loose) - len(todo)
    tick("packing loose chunks", 0, len(todo))
    writer = PackWriter(backend, layout, index)
    pending = 0
    try:
        for d in todo:
            tick("packing loose chunks", 1)
            key = layout.chunk_key(d)
            try:
                data = backend.get(key)
            except ObjectNotFoundError:
                continue  # removed since the listing (gc)
            if hash_bytes(data) != d:
                if key in report.damaged:
                    continue  # named by the first pass already
                report.damaged.append(key)
                log.warning("%s does not match its digest: left as it is (run `casstore verify --all`)", key)
                continue
            if writer.add(d, data):
                report.packed_chunks += 1
                report.packed_bytes += len(data)
                pending += len(data)
            if pending >= _BATCH_BYTES:
                writer.publish()
                pending = 0
        writer.publish()
        report.packs_written += writer.packs_written
    finally:
        writer.close()


def convert_to_packs(backend: Backend, progress: Progress | None = None) -> ConversionReport:
    """Convert the store on ``backend`` to the packs layout (see the module docstring)."""

    def tick(stage: str, advance: int = 0, total: int | None = None) -> None:
        if progress:
            progress(stage, advance, total)

    report = ConversionReport()
    config = read_config(backend)
    packed = StoreConfig(version=config.version, hash=config.hash, chunker=config.chunker,
                         created=config.created, content_layout="packs")
    index = PackIndex(backend, packed.layout)
    index.load()
    if config.content_layout != "packs":
        if config.version < 2:
            raise StoreConfigError(
                f"{backend.url} is a version-{config.version} store; convert only stores of version 2 or 3 to packs"
            )
        _pack_loose(backend, packed, index, report, tick)
        backend.flush()
        data = packed.to_json()
        backend.put_blob(CONFIG_KEY, data)  # another length than the loose config's: replaced
        backend.flush()
        got = read_config(backend)
        if got.content_layout != "packs" or json.loads(backend.get(CONFIG_KEY)) != json.loads(data):
            raise StoreConfigError(f"{backend.url}/{CONFIG_KEY} could not be switched to the packs layout")
        report.config_switched = True
    _pack_loose(backend, packed, index, report, tick)
    backend.flush()
    layout = packed.layout
    loose = sorted(set(layout.stored(backend, "chunks")))
    tick("removing loose chunks", 0, len(loose))
    for d in loose:
        tick("removing loose chunks", 1)
        loc = index.get(d)
        if loc is None:
            continue  # damaged, or written since the last pass: left loose, readable
        raw = backend.get_range(layout.pack_key(loc.pack), loc.offset, loc.offset + loc.length)
        if hash_bytes(raw) != d:
            report.damaged.append(layout.pack_key(loc.pack))
            continue
        backend.delete(layout.chunk_key(d))
        report.loose_deleted += 1
    return report
