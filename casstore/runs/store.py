"""The run store: experiments and runs on top of the object store.

>>> from casstore.runs import open_run_store
>>> store = open_run_store("memory://doc-runs")
>>> h = store.create_run(store.get_or_create_experiment("demo"), run_name="first")
>>> h.log_param("lr", "0.1")
>>> entry = h.log_bytes("notes.txt", b"hello")
>>> digest = h.end()
>>> view = store.get_run(h.run_id)
>>> (view.status, view.params["lr"], view.artifacts["notes.txt"].size, view.digest == digest)
('FINISHED', '0.1', 5, True)
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from casstore._files import write_file
from casstore.exceptions import (
    CasstoreError,
    CorruptRecordError,
    DamagedRecordWarning,
    DamagedRunWarning,
    IntegrityError,
    InvalidInputError,
    ObjectNotFoundError,
    ResourceAlreadyExistsError,
    RunStateError,
    StoreUnavailableError,
)
from casstore.objects import ObjectStore, open_store
from casstore.objects.reading import Progress
from casstore.objects.codec import CHECK_FIELD, pack, unpack, unpack_checked
from casstore.objects.digest import check_digest, hash_bytes, is_digest
from casstore.runs import layout
from casstore.runs.batches import BATCH_BINDINGS, BATCHED_FROM, COMPACTED_FROM, ORDERED_FROM, batch_key, decode_batch
from casstore.runs.claims import PathClaims
from casstore.runs.layout import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    RECORD_VERSION,
    check_experiment_id,
    check_name,
    check_run_id,
    now_ms,
)
from casstore.runs.records import FLUSH_POINTS, FLUSH_SECONDS, ArtifactEntry, DamagedRecord, Experiment, MetricPoint, RunView, decode_record, encode_record, field_of, latest_metrics, point_key
from casstore.runs.state import BatchVanished, RunState, read_live_state, state_from_manifest
from casstore.runs.wal import WalDir, wal_dir_for
from casstore.utils.mlflow_tags import MLFLOW_USER

if TYPE_CHECKING:  # writing and searching are loaded when first used: reading a store needs neither
    from casstore.runs import index as run_index
    from casstore.runs.handle import RunHandle

__all__ = ["RunStore", "open_run_store", "ACTIVE_FOR"]

#: seconds an experiment seen active is taken as active when runs are created in it
ACTIVE_FOR = 10.0


def open_run_store(uri: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> RunStore:
    """Open (or create) the store at ``uri`` (a local path or any fsspec URL) for runs."""
    return RunStore(open_store(uri, storage_options))


class RunStore:
    """Experiments and runs in one casstore store."""

    def __init__(
        self,
        objects: ObjectStore,
        *,
        metric_flush_points: int = FLUSH_POINTS,
        metric_flush_seconds: float = FLUSH_SECONDS,
        io_workers: int | None = None,
    ) -> None:
        self.objects = objects
        self.backend = objects.backend
        self.url = self.backend.url
        self.metric_flush_points = metric_flush_points
        self.metric_flush_seconds = metric_flush_seconds
        #: threads used to store many files at once (log_files)
        self.io_workers = io_workers or (self.backend.concurrency if self.backend.concurrency > 1 else 4)
        self._handles: dict[str, weakref.WeakSet[RunHandle]] = {}
        self._claims: weakref.WeakValueDictionary[str, PathClaims] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        #: version 4: params, tags and metrics in numbered batch records, the manifest in the seal
        self.batched = objects.config.version >= BATCHED_FROM
        #: version 6: experiments' entries are named by time (see casstore/runs/index.py)
        self.ordered = objects.config.version >= ORDERED_FROM
        #: version 5: the seal is a sealed run's only copy of its manifest (no manifests/<digest>)
        self.manifest_objects = objects.config.version < COMPACTED_FROM
        #: version 5 on a local disk: a sealed run keeps its seal only (see runs/compact.py)
        self.compacts = not self.manifest_objects and self.backend.local
        self._bases: dict[tuple[str, int], tuple[RunState, int]] = {}  # sealed generations: immutable
        self._experiments_seen: set[str] = set()  # experiments are never removed: asked once
        self._active_seen: dict[str, float] = {}  # experiment -> when it was last seen active
        self._index: run_index.RunIndex | None = None
        #: where writers keep their metric write-ahead logs (None: a memory store)
        self.wal: WalDir | None = wal_dir_for(self.backend)
        #: the batch record read last for its inline artifacts: (key, path -> content)
        self._inline_batch: tuple[str, dict[str, bytes]] = ("", {})
        self._inline_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RunStore({self.url!r})"

    # ---- experiments ---------------------------------------------------------------

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> str:
        """Create an experiment; :class:`InvalidInputError` if the name is taken (``Default``
        always is: every store has it)."""
        if name == DEFAULT_EXPERIMENT_NAME:
            raise ResourceAlreadyExistsError(
                f"experiment {name!r} already exists (id {DEFAULT_EXPERIMENT_ID}): every store has it. "
                "Use it with set_experiment, or create an experiment under another name"
            )
        exp_id, created = self._create_experiment(name, tags)
        if not created:
            raise ResourceAlreadyExistsError(
                f"experiment {name!r} already exists (id {exp_id}); use get_experiment_by_name or set_experiment"
            )
        return exp_id

    def get_or_create_experiment(self, name: str) -> str:
        """The id of the experiment named ``name``, created if missing (race-safe)."""
        return self._create_experiment(name, None)[0]

    def _create_experiment(self, name: str, tags: dict[str, str] | None) -> tuple[str, bool]:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(f"experiment name must be a non-empty string, got {name!r}")
        found = self._experiment_id_of(name)
        if found is not None:
            now = self.get_experiment(found).name
            if now != name:
                raise ResourceAlreadyExistsError(
                    f"experiment name {name!r} is bound to experiment {found}, since renamed to {now!r}: "
                    "an experiment name names one experiment for good; choose another name"
                )
            return found, False
        tags = _check_tags(tags)
        if name == DEFAULT_EXPERIMENT_NAME:  # what reads showed before it was written
            exp_id, created = DEFAULT_EXPERIMENT_ID, self._default_experiment().creation_time
        else:
            exp_id, created = layout.new_experiment_id(), now_ms()
        meta = {"v": RECORD_VERSION, "experiment_id": exp_id, "name": name, "created": created, "tags": tags}
        self.backend.put_if_absent(layout.experiment_meta_key(exp_id), encode_record(meta))
        self.backend.flush()
        rec = {"v": RECORD_VERSION, "name": name, "experiment_id": exp_id}
        if self.backend.put_if_absent(layout.experiment_name_key(name), encode_record(rec)):
            self.backend.flush()
            self._experiments_seen.add(exp_id)
            self._active_seen[exp_id] = time.monotonic()
            return exp_id, True
        found = self._experiment_id_of(name)
        if found is None:  # pragma: no cover - the name record cannot vanish
            raise CorruptRecordError(f"experiment name record for {name!r} vanished")
        return found, False

    def _experiment_id_of(self, name: str) -> str | None:
        key = layout.experiment_name_key(name)
        try:
            rec = decode_record(self.backend.get(key), f"record {key}")
        except ObjectNotFoundError:
            return None
        if field_of(rec, "name", "str", key) != name:
            raise CorruptRecordError(f"record {key} names experiment {rec['name']!r}, not {name!r}")
        return check_experiment_id(field_of(rec, "experiment_id", "str", key))

    def _default_experiment(self) -> Experiment:
        """``Default`` as it is before its records are written (by its first run): every store
        shows it, created when the store was."""
        return Experiment(
            experiment_id=DEFAULT_EXPERIMENT_ID,
            name=DEFAULT_EXPERIMENT_NAME,
            creation_time=int(self.objects.config.created * 1000),
            artifact_location=self.url,
            last_update_time=int(self.objects.config.created * 1000),
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id; :class:`ObjectNotFoundError` if there is none.
        ``Default`` (id ``"0"``) is there in every store, written or not."""
        exp_id = check_experiment_id(experiment_id)
        key = layout.experiment_meta_key(exp_id)
        try:
            rec = decode_record(self.backend.get(key), f"record {key}")
        except ObjectNotFoundError as e:
            if exp_id == DEFAULT_EXPERIMENT_ID:
                return self._default_experiment()
            raise ObjectNotFoundError(f"no experiment with id {exp_id!r} in store {self.url}") from e
        tags = {str(k): str(v) for k, v in (field_of(rec, "tags", "dict", key, optional=True) or {}).items()}
        name = field_of(rec, "name", "str", key)
        stage, updated = "active", field_of(rec, "created", "int", key, optional=True) or 0
        for ev in self._experiment_events(exp_id):
            op = ev.get("op")
            if op == "set_tag":
                tags[str(ev.get("key"))] = str(ev.get("value"))
            elif op == "delete_tag":
                tags.pop(str(ev.get("key")), None)
            elif op == "rename":
                name = str(ev.get("name"))
            elif op in ("delete", "restore"):
                stage = "deleted" if op == "delete" else "active"
            t = ev.get("time")
            updated = max(updated, t if isinstance(t, int) else 0)
        return Experiment(
            experiment_id=exp_id,
            name=name,
            tags=tags,
            creation_time=field_of(rec, "created", "int", key, optional=True) or 0,
            lifecycle_stage=stage,
            artifact_location=self.url,
            last_update_time=updated,
        )

    def _experiment_events(self, exp_id: str) -> list[dict[str, Any]]:
        keys = sorted(self.backend.list(layout.experiment_events_prefix(exp_id)))
        return [decode_record(self.backend.get(k), f"record {k}") for k in keys]

    def add_experiment_event(self, experiment_id: str, op: str, **fields: str) -> Experiment:
        """Record a change of an experiment: ``set_tag``/``delete_tag`` (``key``, ``value``),
        ``rename`` (``name``), ``delete`` or ``restore``. Nothing is overwritten: the
        experiment's events, in order, give its state."""
        exp = self.get_experiment(experiment_id)
        if exp.experiment_id == DEFAULT_EXPERIMENT_ID and not self.backend.exists(layout.experiment_meta_key(DEFAULT_EXPERIMENT_ID)):
            self._create_experiment(DEFAULT_EXPERIMENT_NAME, None)  # its records, before an event names it
        if op == "delete" and exp.experiment_id == DEFAULT_EXPERIMENT_ID:
            raise InvalidInputError("the Default experiment (id '0') cannot be deleted")
        if op == "delete_tag" and fields.get("key") not in exp.tags:
            raise ObjectNotFoundError(f"experiment {exp.experiment_id} has no tag {fields.get('key')!r}")
        if op == "rename":
            new = fields.get("name", "")
            if not isinstance(new, str) or not new.strip():
                raise InvalidInputError(f"experiment name must be a non-empty string, got {new!r}")
            if new != exp.name:
                self._claim_name(new, exp.experiment_id)
        if op in ("delete", "restore") and (exp.lifecycle_stage == "deleted") == (op == "delete"):
            raise RunStateError(f"experiment {exp.experiment_id} is already {'deleted' if op == 'delete' else 'active'}")
        rec = {"v": RECORD_VERSION, "op": op, "time": now_ms(), **fields}
        self.backend.put_if_absent(layout.experiment_event_key(exp.experiment_id), encode_record(rec))
        self._active_seen.pop(exp.experiment_id, None)
        return self.get_experiment(exp.experiment_id)

    def _claim_name(self, name: str, exp_id: str) -> None:
        """Bind ``name`` to the experiment ``exp_id`` (a rename): refused if another
        experiment holds it, or held it (a name is bound to one experiment for good)."""
        holder = self._experiment_id_of(name)
        if holder is None and name != DEFAULT_EXPERIMENT_NAME:
            rec = {"v": RECORD_VERSION, "name": name, "experiment_id": exp_id}
            if self.backend.put_if_absent(layout.experiment_name_key(name), encode_record(rec)):
                self.backend.flush()
                return
            holder = self._experiment_id_of(name)
        if holder == exp_id:
            return
        raise ResourceAlreadyExistsError(
            f"experiment name {name!r} is bound to experiment {holder or DEFAULT_EXPERIMENT_ID}: "
            "an experiment name names one experiment for good; choose another name"
        )

    def experiment_is_active(self, experiment_id: str) -> bool:
        """Whether the experiment is not deleted; an answer of yes is kept for
        :data:`ACTIVE_FOR` seconds (creating many runs asks the store once in a while, not
        once a run: a deletion by another process is seen within that time)."""
        exp_id = check_experiment_id(experiment_id)
        now = time.monotonic()
        if now - self._active_seen.get(exp_id, -ACTIVE_FOR) < ACTIVE_FOR:
            return True
        active = self.get_experiment(exp_id).lifecycle_stage != "deleted"
        if active:
            self._active_seen[exp_id] = now
        else:
            self._active_seen.pop(exp_id, None)
        return active

    def deleted_experiment_ids(self, experiment_ids: Iterable[str]) -> list[str]:
        """Which of the experiments are deleted: their runs count as deleted while they are
        (MLflow marks a deleted experiment's runs deleted; restoring it brings them back). An
        experiment that is missing or cannot be read counts as active; an answer of active is
        kept for :data:`ACTIVE_FOR` seconds."""
        dead = []
        for exp_id in dict.fromkeys(experiment_ids):
            try:
                if not self.experiment_is_active(exp_id):
                    dead.append(exp_id)
            except (ObjectNotFoundError, CorruptRecordError, InvalidInputError):
                pass
        return dead

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment named ``name`` now, or ``None`` (never for ``Default``)."""
        exp_id = self._experiment_id_of(name)
        if exp_id is None and name == DEFAULT_EXPERIMENT_NAME:
            exp_id = DEFAULT_EXPERIMENT_ID
        if exp_id is None:
            return None
        exp = self.get_experiment(exp_id)
        return exp if exp.name == name else None  # renamed since

    def _list_experiment(self, exp_id: str, out: dict[str, Experiment], damaged: Callable[[str], None]) -> None:
        """Add experiment ``exp_id`` to a listing; one whose records fail their checks is left
        out and named to ``damaged`` (its runs are still listed)."""
        try:
            out[exp_id] = self.get_experiment(exp_id)
        except ObjectNotFoundError:
            pass
        except CorruptRecordError as e:
            damaged(f"experiment {exp_id} is left out of the list of experiments: it cannot be read ({e}). Its runs "
                    "are still listed; restore its damaged records from a backup (`casstore verify --all` lists them)")

    def list_experiments(self, on_damaged: Callable[[str], None] | None = None) -> list[Experiment]:
        """Every experiment (deleted ones too), oldest first (``Default`` among them, written or not).
        What damage leaves out, or costs, is named in a :class:`DamagedRecordWarning`, or to
        ``on_damaged`` (a page that shows it)."""

        def warn(message: str) -> None:
            warnings.warn(DamagedRecordWarning(message), stacklevel=3)

        report = on_damaged or warn
        out: dict[str, Experiment] = {}
        damaged: list[str] = []
        for key in sorted(self.backend.list("experiments/names/")):
            try:
                rec = decode_record(self.backend.get(key), f"record {key}")
                exp_id = field_of(rec, "experiment_id", "str", key)
            except CorruptRecordError as e:
                damaged.append(f"{key}: {e}")
                continue
            except ObjectNotFoundError:
                continue
            if exp_id not in out:  # else a name it had before a rename
                self._list_experiment(exp_id, out, report)
        if damaged:
            # a name record only leads to its experiment, whose own records say what it is:
            # every experiment is found from those, and the damaged record is named
            report(f"{len(damaged)} experiment name record(s) cannot be read ({'; '.join(damaged[:3])}); every "
                   "experiment is listed from its own records, but its name may not lead to it until the record is "
                   "restored from a backup (`casstore verify --all` lists it)")
            for key in self.backend.list("experiments/"):
                parts = key.split("/")
                if len(parts) == 3 and parts[2] == "meta" and parts[1] not in out:
                    self._list_experiment(parts[1], out, report)
        if DEFAULT_EXPERIMENT_ID not in out:
            out[DEFAULT_EXPERIMENT_ID] = self.get_experiment(DEFAULT_EXPERIMENT_ID)
        return sorted(out.values(), key=lambda e: (e.creation_time, e.experiment_id))

    # ---- runs --------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        start_time: int | None = None,
    ) -> RunHandle:
        """Start a new run in an experiment; return a handle to write to it."""
        from casstore.runs.handle import RunHandle

        exp_id = check_experiment_id(experiment_id)
        if exp_id not in self._experiments_seen:
            if exp_id == DEFAULT_EXPERIMENT_ID:
                self.get_or_create_experiment(DEFAULT_EXPERIMENT_NAME)
            else:
                self.get_experiment(exp_id)
            self._experiments_seen.add(exp_id)
        if run_name is not None and not isinstance(run_name, str):
            raise InvalidInputError(f"run_name must be a string, got {type(run_name).__name__}")
        start = now_ms() if start_time is None else start_time
        if isinstance(start, bool) or not isinstance(start, int):
            raise InvalidInputError(f"start_time must be integer milliseconds since the epoch, got {start!r}")
        run_id = layout.new_run_id()
        meta = {
            "v": RECORD_VERSION,
            "run_id": run_id,
            "experiment_id": exp_id,
            "run_name": run_name or "",
            "start_time": start,
            "tags": _check_tags(tags),
        }
        if self.batched and self.objects.layout.packed:  # a log of many files: one record, not one each
            meta["bindings"] = BATCH_BINDINGS
        if not self.backend.put_if_absent(layout.run_meta_key(run_id), encode_record(meta)):
            raise RunStateError(f"run id {run_id} is already taken (this should never happen); try again")
        entry = {"v": RECORD_VERSION, "run_id": run_id, "start_time": start}
        if self.ordered:  # named by time, on the service's clock where its responses tell it
            key = layout.experiment_entry_key(exp_id, run_id, 0, self.backend.server_time())
        else:
            key = layout.experiment_run_key(exp_id, run_id)
        self.backend.put_if_absent(key, encode_record(entry))
        if self.ordered:
            self._note_entry(exp_id, run_id, 0, layout.entry_time(key.rsplit("/", 1)[-1]), entry)
        return self._track(RunHandle(self, run_id, meta, entry_key=key))

    def _note_entry(self, exp_id: str, run_id: str, generation: int, named_at: float | None,
                    record: dict[str, Any]) -> None:
        """Version 6: make sure a search that lists only the experiment's entries named after a
        point sees this run (added, or resumed into ``generation``): if the entry just written
        is named more than :data:`~casstore.runs.index.NOTE_AFTER` seconds before the service's
        clock now (this machine's clock was used, and is behind, or the write took that long),
        or ``named_at`` is ``None``, write a note (``record`` under an entry named by the
        service's clock), and check it the same way. Nothing on a store without a clock of its
        own (every search lists every entry there)."""
        from casstore.runs import index as run_index

        for _ in range(5):
            now = self.backend.server_time()
            if now is None or (named_at is not None and named_at >= now - run_index.NOTE_AFTER):
                return
            key = layout.experiment_entry_key(exp_id, run_id, generation, now)
            self.backend.put_if_absent(key, encode_record(record))
            named_at = layout.entry_time(key.rsplit("/", 1)[-1])
        raise StoreUnavailableError(
            f"store {self.url}: the entry of run {run_id} could not be written within "
            f"{run_index.NOTE_AFTER:.0f} seconds of the service's clock five times; check the network and try again"
        )

    def entry_key(self, experiment_id: str, run_id: str) -> str:
        """The key of a run's entry in its experiment: ``runs/<run_id>`` (before version 6,
        and runs made before an upgrade) or ``runs/<time id>.<run_id>``, found by listing."""
        for key in self.backend.list(layout.experiment_runs_prefix(experiment_id)):
            if layout.parse_entry(key.rsplit("/", 1)[-1]) == (run_id, 0):
                return key
        return layout.experiment_run_key(experiment_id, run_id)

    def open_run(self, run_id: str) -> RunHandle:
        """A handle to resume writing an unsealed run."""
        from casstore.runs.handle import RunHandle

        run_id = check_run_id(run_id)
        meta = self._meta(run_id)
        generation = self.generation(run_id)
        seal = self._seal_at(run_id, generation)
        if seal is not None:
            raise RunStateError(
                f"run {run_id} is ended and sealed (status {seal['status']}); reopen it with "
                "RunStore.reopen_run (start_run(run_id=...)) to log more, or start a new run."
            )
        if self.is_deleted(run_id):
            raise RunStateError(f"run {run_id} is deleted; it cannot be resumed")
        self.replay_dead_logs(run_id)
        return self._track(RunHandle(self, run_id, meta, generation))

    def reopen_run(self, run_id: str) -> RunHandle:
        """Resume a run, ended or not. An ended run gets a new generation: the marker
        ``reopened/<g>`` (naming the digest it follows) opens it, and its next end writes
        ``seals/<g>``, whose manifest names the previous run digest. Nothing recorded is
        removed or rebound, so every earlier run digest stays verifiable."""
        run_id = check_run_id(run_id)
        self._meta(run_id)
        if self.is_deleted(run_id):
            raise RunStateError(f"run {run_id} is deleted; it cannot be resumed")
        seal = self.seal_record(run_id)
        if seal is None:
            return self.open_run(run_id)
        g = int(seal["generation"]) + 1
        rec = {"v": RECORD_VERSION, "after": str(seal["digest"]), "time": now_ms()}
        # first beside the experiment's index entry: searches read the run again from then on
        meta = self._meta(run_id)
        self.backend.put_if_absent(layout.experiment_reopen_key(str(meta["experiment_id"]), run_id, g),
                                   encode_record(rec))
        if self.ordered:  # the entry above is named by the run's id, which says nothing of when
            self._note_entry(str(meta["experiment_id"]), run_id, g, None, rec)
        self.backend.put_if_absent(layout.reopen_key(run_id, g), encode_record(rec))  # a concurrent resume made it: the same
        self.backend.flush()
        return self.open_run(run_id)

    def generation(self, run_id: str) -> int:
        """How many times the run was resumed after ending (0 for most runs)."""
        keys = self.backend.list(layout.reopen_prefix(run_id))
        gens = [int(k.rsplit("/", 1)[-1]) for k in keys if k.rsplit("/", 1)[-1].isdigit()]
        return max(gens, default=0)

    def seal_history(self, run_id: str) -> list[dict[str, Any]]:
        """Every seal of the run, oldest first: ``{generation, digest, status, end_time}``,
        each digest naming a manifest that stays verifiable."""
        out = []
        for g in range(self.generation(run_id) + 1):
            rec = self._seal_at(run_id, g)
            if rec is not None:
                out.append(rec)
        return out

    def replay_dead_logs(self, run_id: str) -> int:
        """Write the points of the metric logs of dead writers of ``run_id`` that no segment
        carries as segments, and remove those logs; return how many points were written."""
        if self.wal is None or not self.wal.names(run_id):
            return 0

        def covered() -> dict[str, list[tuple[int, int]]]:
            g = self.generation(run_id)
            return read_live_state(self.backend, run_id, base=self.base_state(run_id, g), generation=g).covered

        from casstore.runs.handle import RunHandle

        handle = RunHandle(self, run_id, self._meta(run_id), self.generation(run_id)) if self.batched else None

        def write(name: str, entries: list[tuple[int, MetricPoint]]) -> None:
            seqs = [s for s, _p in entries]
            points = [p for _s, p in entries]
            if handle is not None:  # version 4: one batch record carrying the range
                handle._append({}, {}, points, (name, min(seqs), max(seqs)))
                return
            rec = {"v": RECORD_VERSION, "points": [list(p) for p in points], "wal": [name, min(seqs), max(seqs)]}
            self.backend.put_if_absent(layout.metric_segment_key(run_id), encode_record(rec))

        try:
            return self.wal.replay_dead(run_id, covered, write)
        except RunStateError:
            # version 4, a run fenced by a close whose seal is not written yet: the log stays,
            # and the end that completes the seal takes its points
            return 0

    def discard_dead_logs(self, run_id: str) -> None:
        """Remove the metric logs of dead writers of a sealed run (its manifest has their points)."""
        if self.wal is not None and self.wal.names(run_id):
            self.wal.replay_dead(run_id, dict, lambda name, entries: None)

    def _meta(self, run_id: str) -> dict[str, Any]:
        """The run's meta record; once the run is sealed (and the record removed, see
        runs/compact.py), the meta its first seal holds."""
        key = layout.run_meta_key(run_id)
        try:
            return decode_record(self.backend.get(key), f"record {key}")
        except ObjectNotFoundError as e:
            seal = self._seal_at(run_id, 0)
            if seal is None:
                raise ObjectNotFoundError(f"no run {run_id} in store {self.url}") from e
            return self.base_of_seal(run_id, seal)[0].meta

    def base_state(self, run_id: str, generation: int) -> RunState | None:
        """For a run of a version-4 store resumed into ``generation`` (``>= 1``): the state
        the seal of the generation before holds, which its batches are folded over."""
        base = self.base_of(run_id, generation)
        return None if base is None else base[0]

    def base_of(self, run_id: str, generation: int) -> tuple[RunState, int] | None:
        """:meth:`base_state` and the number of the last batch that seal folded (the resumed
        generation numbers its batches after it)."""
        if not self.batched or generation < 1:
            return None
        with self._lock:
            got = self._bases.get((run_id, generation))
        if got is not None:
            return got
        seal = self._seal_at(run_id, generation - 1)
        if seal is None:
            raise CorruptRecordError(
                f"run {run_id} was resumed into generation {generation} but its seal "
                f"{layout.seal_key(run_id, generation - 1)} is missing; the store is damaged"
            )
        got = self.base_of_seal(run_id, seal)
        with self._lock:
            self._bases[(run_id, generation)] = got
        return got

    def base_of_seal(self, run_id: str, seal: dict[str, Any]) -> tuple[RunState, int]:
        """The state a seal holds (its manifest, verified) and its ``top`` (0 if it has none)."""
        man = self.read_manifest(run_id, str(seal["digest"]), seal)
        state = state_from_manifest(man, run_id, f"manifest of run {run_id}")[0]
        top = seal.get("top")
        return state, top if isinstance(top, int) and not isinstance(top, bool) else 0

    def path_claims(self, run_id: str) -> PathClaims:
        """The artifact paths of ``run_id`` claimed by this process's writers, shared by all
        its handles (kept while a handle holds it)."""
        with self._lock:
            claims = self._claims.get(run_id)
            if claims is None:
                claims = self._claims[run_id] = PathClaims(run_id)
            return claims

    def _track(self, handle: RunHandle) -> RunHandle:
        with self._lock:
            self._handles.setdefault(handle.run_id, weakref.WeakSet()).add(handle)
        return handle

    def _flush_local(self, run_id: str, but: RunHandle | None = None) -> None:
        """Write metrics that handles of this process (``but`` one) still buffer for ``run_id``."""
        with self._lock:
            handles = [h for h in self._handles.get(run_id, ()) if h is not but]
        for h in handles:
            try:
                h.flush_metrics()
            except RunStateError:
                pass

    def seal_record(self, run_id: str) -> dict[str, Any] | None:
        """The seal of the run's current generation ``{digest, status, end_time, generation}``,
        or ``None`` if it is open (never ended, or resumed since)."""
        return self._seal_at(run_id, self.generation(run_id))

    def _seal_at(self, run_id: str, generation: int) -> dict[str, Any] | None:
        key = layout.seal_key(run_id, generation)
        try:
            data = self.backend.get(key)
        except ObjectNotFoundError:
            return None
        rec = decode_record(data, f"record {key}")
        if "manifest" in rec:  # version 4's seal holds the manifest and must check itself
            unpack_checked(data, f"record {key}", required=True)
        digest = field_of(rec, "digest", "str", key)
        if not is_digest(digest):
            raise CorruptRecordError(f"record {key}: {digest!r} is not a BLAKE3 digest")
        field_of(rec, "status", "str", key)
        manifest = rec.get("manifest")
        if manifest is not None and not isinstance(manifest, bytes):
            raise CorruptRecordError(f"record {key}: its manifest is not bytes")
        return {**rec, "generation": generation}

    def read_manifest(self, run_id: str, digest: str, seal: dict[str, Any] | None = None) -> dict[str, Any]:
        """A sealed run's manifest, re-hashed against ``digest`` before it is decoded: held
        in the ``seal`` record (version 4; read if not given), else ``manifests/<digest>``."""
        if seal is None and self.batched:  # the seal of the generation that has this digest
            for g in range(self.generation(run_id), -1, -1):
                try:
                    seal = self._seal_at(run_id, g)
                except CorruptRecordError:
                    seal = None  # a damaged seal: the manifest object is read instead
                if seal is not None and seal["digest"] == digest:
                    break
            else:
                seal = None
        if seal is not None and isinstance(seal.get("manifest"), bytes):
            data = seal["manifest"]
            actual = hash_bytes(data)
            if actual != digest:
                raise IntegrityError(f"manifest in the seal of run {run_id}", digest, actual)
            # tuples: a manifest's metric points are its bulk (see codec.unpack)
            return decode_record(data, f"manifest in the seal of run {run_id}", use_list=False)
        key = layout.manifest_key(run_id, digest)
        missing = CorruptRecordError(
            f"run {run_id} is sealed with digest {digest} but its manifest {key} is missing; the store is damaged"
        )
        data = self._get_verified(key, digest, f"manifest {key} of run {run_id}", missing)
        return decode_record(data, f"manifest {key}", use_list=False)

    # ---- artifact content ------------------------------------------------------------

    def artifact_chunks(self, run_id: str, entry: ArtifactEntry, progress: Progress | None = None) -> Iterator[bytes]:
        """An artifact's content, verified, piece by piece: from the object store for a
        file, from its binding record for an inline artifact. A missing or corrupt
        artifact raises before anything is yielded."""
        if not entry.inline:
            return self.objects.iter_file(entry.digest, progress)
        data = self.inline_data(run_id, entry)
        if progress:
            progress(len(data))
        return iter([data])

    def artifact_bytes(self, run_id: str, entry: ArtifactEntry) -> bytes:
        """An artifact's whole content, verified."""
        return b"".join(self.artifact_chunks(run_id, entry))

    def artifact_to_file(self, run_id: str, entry: ArtifactEntry, dest: str | os.PathLike[str],
                         progress: Progress | None = None, *, durable: bool | None = None) -> None:
        """Write an artifact to ``dest``, renamed into place only once verified, and synced
        unless ``durable`` is False (see :func:`casstore._files.write_file`)."""
        write_file(self.artifact_chunks(run_id, entry, progress), dest, durable=durable)

    def inline_data(self, run_id: str, entry: ArtifactEntry) -> bytes:
        """The content an inline artifact's binding record holds, checked against the
        entry (its digest and size): :class:`IntegrityError` on any difference."""
        if entry.batch:
            return self._batched_inline(run_id, entry)
        key = layout.artifact_key(run_id, entry.path)
        try:
            raw = self.backend.get(key)
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(
                f"artifact {entry.path!r} of run {run_id} is held in its record {key}, which is missing; "
                "the store is damaged: run `casstore verify --all`"
            ) from e
        try:
            rec = decode_record(raw, f"record {key}")
        except CorruptRecordError as e:  # its content is not to be trusted: say what it hashes to now
            try:
                held = unpack(raw).get("data")
                actual = hash_bytes(held) if isinstance(held, bytes) else "no content"
            except (CorruptRecordError, AttributeError):
                actual = "an unreadable record"
            raise IntegrityError(f"artifact {entry.path!r} of run {run_id} (record {key})", entry.digest, actual,
                                 str(e)) from e
        data = rec.get("data")
        if not isinstance(data, bytes):
            raise CorruptRecordError(f"record {key} of inline artifact {entry.path!r} holds no content")
        actual = hash_bytes(data)
        if actual != entry.digest or len(data) != entry.size or rec.get("path") != entry.path:
            detail = f"{len(data)} bytes, {entry.size} recorded" if len(data) != entry.size else ""
            raise IntegrityError(f"artifact {entry.path!r} of run {run_id} (record {key})", entry.digest, actual, detail)
        return data

    def _batched_inline(self, run_id: str, entry: ArtifactEntry) -> bytes:
        """The content of an inline artifact bound in a batch record, checked against the
        entry; the batch read last is kept, so reading a log's files one by one reads it once."""
        key = batch_key(run_id, entry.batch)
        with self._inline_lock:
            held = self._inline_batch if self._inline_batch[0] == key else None
        if held is None:
            try:
                raw = self.backend.get(key)
            except ObjectNotFoundError as e:
                raise ObjectNotFoundError(
                    f"artifact {entry.path!r} of run {run_id} is held in batch record {key}, which is missing; "
                    "the store is damaged: run `casstore verify --all`") from e
            try:
                batch = decode_batch(raw, key, entry.batch)
            except CorruptRecordError as e:
                raise IntegrityError(f"artifact {entry.path!r} of run {run_id} (batch record {key})", entry.digest,
                                     "an unreadable record", str(e)) from e
            held = (key, {a[0]: a[5] for a in batch.artifacts if a[5] is not None})
            with self._inline_lock:
                self._inline_batch = held
        data = held[1].get(entry.path)
        if data is None:
            raise CorruptRecordError(f"batch record {key} holds no content for inline artifact {entry.path!r}")
        actual = hash_bytes(data)
        if actual != entry.digest or len(data) != entry.size:
            detail = f"{len(data)} bytes, {entry.size} recorded" if len(data) != entry.size else ""
            raise IntegrityError(f"artifact {entry.path!r} of run {run_id} (batch record {key})", entry.digest, actual, detail)
        return data

    def _get_verified(self, key: str, digest: str, what: str, missing: Exception) -> bytes:
        """The object under ``key``, re-hashed against ``digest`` (IntegrityError naming ``what``)."""
        try:
            data = self.backend.get(key)
        except ObjectNotFoundError as e:
            raise missing from e
        actual = hash_bytes(data)
        if actual != digest:
            raise IntegrityError(what, digest, actual)
        return data

    def get_run(self, run_id: str, *, flush: bool = True, warn: bool = True) -> RunView:
        """A sealed run from its verified manifest; an open run from its live records (after
        writing the metrics this process still buffers for it, unless ``flush`` is false).

        A damaged run gives what can be verified: a record that fails its checks is left out
        and named in ``view.damaged``; a sealed run whose manifest does not verify is shown
        from its own records (each checks itself), which the seal then does not vouch for.
        With ``warn``, a :class:`DamagedRunWarning` names what was left out. A run whose
        meta record is damaged cannot be shown at all (:class:`CorruptRecordError`)."""
        run_id = check_run_id(run_id)
        if flush:
            self._flush_local(run_id)
        view = self._read_run(run_id)
        if warn and view.damaged:
            warnings.warn(DamagedRunWarning(
                f"run {run_id}: {len(view.damaged)} record(s) failed their checks and what they hold is not shown: "
                + "; ".join(d.describe() for d in view.damaged[:3])
                + ". Restore them from a backup (`casstore verify --all` lists every damaged object)."), stacklevel=2)
        if warn and view.sealed:
            self._warn_stranded(view)
        return view

    def _warn_stranded(self, view: RunView) -> None:
        """Warn if this machine's metric logs of a sealed run hold points its seal lacks: a
        writer here was stopped before it wrote them to the store, and the run was ended
        elsewhere (on a remote store each machine keeps its own logs). Resuming the run
        here writes them into its next generation (:meth:`replay_dead_logs`)."""
        if self.wal is None:
            return
        names = self.wal.names(view.run_id)
        if not names:
            return
        logged = Counter(point_key(p) for name in names for _s, p in self.wal.read(view.run_id, name))
        missing = sum((logged - Counter(map(point_key, view.points))).values())
        if missing:
            warnings.warn(DamagedRunWarning(
                f"run {view.run_id}: {missing} metric point(s) logged on this machine by a writer that was stopped "
                f"are in its metric log here ({self.wal.path}) but not in its seal: the run was ended elsewhere "
                "before they reached the store. Resume the run on this machine (start_run(run_id=...), or "
                "RunStore.reopen_run) to add them; they are kept until then."), stacklevel=3)

    def _read_run(self, run_id: str) -> RunView:
        damaged: list[DamagedRecord] = []
        try:
            seal = self.seal_record(run_id)
        except CorruptRecordError as e:
            generation = self.generation(run_id)
            seal = self._seal_from_manifests(run_id, generation) or self._salvaged_seal(run_id, generation)
            damaged.append(DamagedRecord(layout.seal_key(run_id, generation), str(e)))
        end_time: int | None
        digest: str | None = None
        if seal is not None:
            digest = str(seal["digest"])
            try:
                man = self.read_manifest(run_id, digest, seal)
                state, status, end_time = state_from_manifest(man, run_id, f"manifest of run {run_id}")
            except (IntegrityError, CorruptRecordError) as e:
                state = self._live_state(run_id)
                status, end_time = str(seal.get("status", "FINISHED")), seal.get("end_time")
                damaged.append(DamagedRecord(layout.manifest_key(run_id, digest), (
                    f"{e}; the run is shown from its own records (each checks itself), which the seal does not "
                    "vouch for")))
        elif damaged:  # a damaged seal and no manifest that verifies
            try:
                state = self._live_state(run_id)
            except ObjectNotFoundError as e:  # version 5: the seal was all the run kept
                raise CorruptRecordError(
                    f"run {run_id} cannot be read: {damaged[0].detail}, and it was the run's only record (a sealed "
                    f"run keeps its seal only). Restore {damaged[0].key} from a backup"
                ) from e
            status, end_time = "FINISHED", None
        else:
            status, end_time = "RUNNING", None
            try:
                state = self._live_state(run_id)
            except (BatchVanished, ObjectNotFoundError) as e:
                if self.seal_record(run_id) is None:
                    if isinstance(e, ObjectNotFoundError):
                        self._refuse_if_lost(run_id)
                    raise
                return self._read_run(run_id)  # sealed while read, its records removed: the seal has it
        return _view(state, status, end_time, digest, self.is_deleted(run_id), damaged)

    def _refuse_if_lost(self, run_id: str) -> None:
        """A run with neither a seal nor a meta record: a run whose creation never reached
        the disk holds nothing else, but one that still holds records (its artifacts, models,
        a deletion) lost what said what it is: :class:`CorruptRecordError` naming it, so no
        listing takes it for a run that never was."""
        held = sorted(self.backend.list(layout.run_prefix(run_id)))
        if not held:
            return
        seal = layout.seal_key(run_id, self.generation(run_id))
        raise CorruptRecordError(
            f"run {run_id} cannot be read: its seal ({seal}) and its meta record ({layout.run_meta_key(run_id)}) "
            f"are missing, though it still holds {len(held)} record(s) such as {held[0]}. Restore {seal} from a "
            f"backup (a sealed run on a local disk keeps its seal only; a run still open needs its meta record); "
            "`casstore verify --all` lists everything missing"
        )

    def _live_state(self, run_id: str) -> RunState:
        g = self.generation(run_id)
        try:
            return read_live_state(self.backend, run_id, wal=self.wal, base=self.base_state(run_id, g), generation=g)
        except BatchVanished:
            raise
        except ObjectNotFoundError as e:
            raise ObjectNotFoundError(f"no run {run_id} in store {self.url}") from e
        except CorruptRecordError as e:  # the meta record: rebuilt from the experiment's index, if it can be
            meta = self._meta_from_index(run_id)
            if meta is None:
                raise
            state = read_live_state(self.backend, run_id, {layout.run_meta_key(run_id): meta}, wal=self.wal)
            state.damaged.insert(0, DamagedRecord(layout.run_meta_key(run_id), (
                f"{e}; the run's experiment and start time are taken from the experiment's index, its name and "
                "system tags are lost")))
            return state

    def _meta_from_index(self, run_id: str) -> dict[str, Any] | None:
        """What the experiment index says of a run whose meta record is damaged: its
        experiment and start time (``None`` if no index record of it reads)."""
        for key in self.backend.list("experiments/"):
            parts = key.split("/")
            if len(parts) != 4 or parts[2] != "runs" or layout.parse_entry(parts[3]) != (run_id, 0):
                continue
            try:
                rec = decode_record(self.backend.get(key), f"record {key}")
                start = field_of(rec, "start_time", "int", key)
            except (CorruptRecordError, ObjectNotFoundError):
                continue
            return {"v": RECORD_VERSION, "run_id": run_id, "experiment_id": parts[1], "run_name": "",
                    "start_time": start, "tags": {}}
        return None

    def _salvaged_seal(self, run_id: str, generation: int) -> dict[str, Any] | None:
        """When the seal fails its own check: its manifest if that still hashes to the digest
        beside it (the damage is elsewhere in the seal), as a seal; else ``None``."""
        try:
            rec = unpack(self.backend.get(layout.seal_key(run_id, generation)))
        except (CasstoreError, ValueError):
            return None
        man, digest = (rec.get("manifest"), rec.get("digest")) if isinstance(rec, dict) else (None, None)
        if not isinstance(man, bytes) or not isinstance(digest, str) or hash_bytes(man) != digest:
            return None
        try:
            held = decode_record(man, f"manifest in the seal of run {run_id}")
        except CorruptRecordError:
            return None
        return {"digest": digest, "status": held.get("status"), "end_time": held.get("end_time"), "manifest": man,
                "generation": generation}

    def _seal_from_manifests(self, run_id: str, generation: int) -> dict[str, Any] | None:
        """When the seal is damaged: the one manifest of the run's ``generation`` that hashes
        to its name, as a seal (``None`` if there is not exactly one)."""
        found = []
        for key in self.backend.list(f"runs/{run_id}/manifests/"):
            digest = key.rsplit("/", 1)[-1]
            try:
                man = self.read_manifest(run_id, digest)
            except (IntegrityError, CorruptRecordError, ObjectNotFoundError):
                continue
            if man.get("generation", 0) != generation:
                continue
            found.append({"digest": digest, "status": man.get("status"), "end_time": man.get("end_time")})
        return found[0] if len(found) == 1 else None

    def list_run_ids(self, experiment_id: str | None = None) -> list[str]:
        """Ids of the runs of one experiment, or of all experiments."""
        return self._list_runs(experiment_id)[0]

    def _list_runs(self, experiment_id: str | None = None) -> tuple[list[str], dict[str, int]]:
        """The run ids of one experiment (or all), and the latest generation each resumed
        run was resumed into, from one listing."""
        prefix = "experiments/" if experiment_id is None else layout.experiment_runs_prefix(check_experiment_id(experiment_id))
        return entries_of(self._list_keys(prefix, split=experiment_id is not None))

    def _list_keys(self, prefix: str, split: bool) -> list[str]:
        """The keys under ``prefix``; on a remote store, with ``split`` (the keys go on with a
        run id), as 16 listings run at once, one per first hex digit: 10,000 runs take the
        time of one listing page, not ten."""
        if not split or self.backend.concurrency <= 1:
            return list(self.backend.list(prefix))
        return _by_first_digit(lambda h: list(self.backend.list(prefix + h)))

    def _list_entries(self, prefix: str, after: str | None) -> list[tuple[str, float]]:
        """An experiment's run entries under ``prefix`` with their modification times: those
        named after ``after`` and before ``1`` (time-ordered names begin with ``0`` until the
        year 2527; the runs of older versions, named at random, were all listed before), or
        with ``after`` ``None``, every entry, as 16 listings at once (one per first hex digit)."""
        b = self.backend
        if after is not None:  # (keys past the stop that its last page holds are left out: the same at any page size)
            return [x for x in b.list_after(prefix, prefix + after, prefix + "1") if x[0] < prefix + "1"]
        return _by_first_digit(lambda h: list(b.list_after(prefix + h)))

    @property
    def index(self) -> run_index.RunIndex:
        """The local cache of run summaries that searches run on (see :mod:`casstore.runs.index`)."""
        from casstore.runs import index as run_index

        with self._lock:
            if self._index is None:
                self._index = run_index.RunIndex(self)
            return self._index

    def publish_summary(self, run_id: str, state: RunState, status: str, end_time: int, digest: str,
                        generation: int = 0) -> None:
        """Version 4: publish the summary of a run just sealed to the search index, soon (a
        failure costs later searches a read of the run, never a wrong answer: it is said
        and passed over)."""
        from casstore.runs import index as run_index

        view = _view(state, status, end_time, digest, False)
        run_index.publish_soon(self, run_index.summary_of(view, generation))

    def search_runs(
        self,
        experiment_ids: list[str] | None = None,
        filter_string: str | None = "",
        order_by: list[str] | None = None,
        max_results: int | None = None,
        deleted: bool | None = False,
        page_token: str | None = None,
    ) -> run_index.Page:
        """Runs of the given experiments (all if ``None``) that match an MLflow filter string,
        sorted by ``order_by`` then newest first. ``deleted``: ``False`` active runs only,
        ``True`` deleted runs only, ``None`` both. Without ``max_results``, every match;
        with it, a page of at most that many, whose ``token`` (``None`` on the last page)
        is the ``page_token`` of the next. Results carry each run's info, params, tags and
        latest metrics (as MLflow's do); :meth:`get_run` has its artifacts and history.
        Answered from the search index, checked against the runs (see ``runs/index.py``)."""
        from casstore.runs import index as run_index
        from casstore.runs import search

        comparisons = search.parse_filter(filter_string)
        keys = search.parse_order_by(order_by)
        if max_results is not None and (isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 0):
            raise InvalidInputError(f"max_results must be a non-negative integer, got {max_results!r}")
        query = repr((experiment_ids, [str(c) for c in comparisons], [str(k) for k in keys], deleted))
        offset = run_index.token_offset(query, page_token)
        idx, ids = self.indexed_runs(experiment_ids)
        dead = self.deleted_experiment_ids(idx.experiments_of(ids) if experiment_ids is None else experiment_ids)
        views, more = idx.search(ids, comparisons, keys, deleted, max_results, offset, dead)
        page = run_index.Page(views)
        if more and max_results is not None:
            page.token = run_index.page_token(query, offset + max_results)
        return page

    def indexed_runs(self, experiment_ids: list[str] | None = None) -> tuple[run_index.RunIndex, list[str]]:
        """The search index brought up to date for the runs of the given experiments (all if
        ``None``), and those runs' ids: what :meth:`search_runs` queries (the web UI's runs
        table asks it for a page, the count of matches and the columns)."""
        from casstore.runs import index as run_index

        ids: list[str] = []
        resumed: dict[str, int] = {}
        for exp in [None] if experiment_ids is None else experiment_ids:
            some, gens = self._listed_runs(exp)
            ids.extend(some)
            resumed.update(gens)
        ids = list(dict.fromkeys(ids))
        self._flush_local_all()
        run_index.flush_pending(self)  # this process's searches see what it has just ended
        idx = self.index
        idx.refresh(ids, resumed)
        return idx, ids

    def listed_run_ids(self, experiment_id: str) -> list[str]:
        """Ids of the runs of one experiment (deleted ones too), listed as a search lists
        them: on a store of version 6 on S3, only the entries named since this machine's
        cache last listed the experiment (one LIST, instead of the whole experiment's)."""
        return self._listed_runs(experiment_id)[0]

    def _listed_runs(self, experiment_id: str | None) -> tuple[list[str], dict[str, int]]:
        """``_list_runs``, through the search index's cache of listings where the store allows."""
        if experiment_id is not None and self.backend.listing_times and self.ordered:
            eid = check_experiment_id(experiment_id)
            return self.index.experiment_runs(
                eid, functools.partial(self._list_entries, layout.experiment_runs_prefix(eid)), entries_of)
        return self._list_runs(experiment_id)

    def _flush_local_all(self) -> None:
        """Write the metrics every handle of this process buffers (a search sees them)."""
        with self._lock:
            run_ids = list(self._handles)
        for run_id in run_ids:
            self._flush_local(run_id)

    def delete_run(self, run_id: str, reason: str = "") -> None:
        """Mark a run deleted (a record, never a silent removal); deleting twice is a no-op."""
        run_id = check_run_id(run_id)
        if not any(self.backend.exists_many([layout.run_meta_key(run_id), layout.seal_key(run_id)])):
            raise ObjectNotFoundError(f"no run {run_id} in store {self.url}")  # a damaged run can be deleted too
        if self.batched:
            from casstore.runs import index as run_index

            self._fence_deleted(run_id, str(reason))
            run_index.publish(self, [run_index.deletion_summary(run_id)])  # before the marker: see runs/index.py
        rec = {"v": RECORD_VERSION, "time": now_ms(), "reason": str(reason)}
        self.backend.put_if_absent(layout.deleted_key(run_id), encode_record(rec))

    def _fence_deleted(self, run_id: str, reason: str) -> None:
        """Version 4: the batch that fences an open run being deleted (no batch after it
        counts). A run whose seal, meta or batches fail their checks gets none: writers
        refuse such a run already, and the deletion marker is what readers go by."""
        from casstore.runs.handle import RunHandle

        try:
            if self.seal_record(run_id) is None:
                RunHandle(self, run_id, self._meta(run_id), self.generation(run_id)).fence_deleted(reason)
        except CorruptRecordError:
            pass

    def is_deleted(self, run_id: str) -> bool:
        return self.backend.exists(layout.deleted_key(check_run_id(run_id)))

    # ---- model entries -------------------------------------------------------------

    def put_model_entry(self, entry: dict[str, Any]) -> str:
        """Store a model entry (canonical msgpack) under its BLAKE3; return the digest."""
        if not isinstance(entry, dict):
            raise InvalidInputError(f"a model entry must be a dict, got {type(entry).__name__}")
        data = pack(entry)
        digest = hash_bytes(data)
        self.backend.put_blob(self.objects.layout.model_key(digest), data)
        return digest

    def load_model_entry(self, model_digest: str) -> dict[str, Any]:
        """A model entry, re-hashed against its digest before it is decoded."""
        digest = check_digest(model_digest, "model digest")
        key = self.objects.layout.model_key(digest)
        missing = ObjectNotFoundError(f"no model entry {digest} in store {self.url}")
        data = self._get_verified(key, digest, f"model entry {key}", missing)
        entry = unpack(data, f"model entry {key}")
        if not isinstance(entry, dict):
            raise CorruptRecordError(f"model entry {key} is not a map")
        return entry


_T = TypeVar("_T")


def _by_first_digit(list_part: Callable[[str], list[_T]]) -> list[_T]:
    """``list_part(h)`` for each hex digit ``h``, as 16 listings at once, concatenated."""
    with ThreadPoolExecutor(16, thread_name_prefix="casstore-list") as pool:
        return [x for part in pool.map(list_part, "0123456789abcdef") for x in part]


def entries_of(keys: Iterator[str] | list[str]) -> tuple[list[str], dict[str, int]]:
    """The run ids that the keys of experiments' run entries name, sorted, and the latest
    generation each resumed run was resumed into."""
    out = set()
    resumed: dict[str, int] = {}
    for key in keys:
        parts = key.split("/")
        entry = layout.parse_entry(parts[3]) if len(parts) == 4 and parts[2] == "runs" else None
        if entry is not None:
            out.add(entry[0])
            if entry[1]:
                resumed[entry[0]] = max(entry[1], resumed.get(entry[0], 0))
    return sorted(out), resumed


def run_value(view: RunView, entity: str, key: str) -> Any:
    """A run's value for a search identifier (``None`` if it has none)."""
    if entity == "metrics":
        return view.metrics.get(key)
    if entity == "params":
        return view.params.get(key)
    if entity == "tags":
        return view.tags.get(key)
    if key == "user_id":
        return view.tags.get(MLFLOW_USER, "")
    if key == "artifact_uri":
        return view.artifact_uri
    if key == "duration":
        return view.end_time - view.start_time if view.end_time and view.start_time else None
    return getattr(view, key, None)


def _check_tags(tags: dict[str, str] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise InvalidInputError(f"tags must be a dict of strings, got {type(tags).__name__}")
    return {check_name("tag", k): str(v) for k, v in tags.items()}


def _view(state: RunState, status: str, end_time: int | None, digest: str | None, deleted: bool,
          damaged: list[DamagedRecord] | None = None) -> RunView:
    return RunView(
        run_id=state.run_id,
        run_name=state.run_name,
        experiment_id=state.experiment_id,
        status=status,
        start_time=state.start_time,
        end_time=end_time,
        digest=digest,
        sealed=digest is not None,
        deleted=deleted,
        params=dict(state.params),
        tags=dict(state.tags),
        metrics=latest_metrics(state.points),
        artifacts=dict(state.artifacts),
        models=dict(state.models),
        points=tuple(state.points),
        inputs=tuple(dict(i) for i in state.inputs),
        damaged=tuple([*(damaged or []), *state.damaged]),
    )
