"""The backend contract: named bytes on some storage, and nothing more.

A backend stores opaque byte strings under ``/``-separated keys such as
``chunks/ab/cd/<digest>``. It knows nothing of digests, recipes or runs. The
contract is six primitives (see :class:`Backend`); everything else is derived
here, once. Capabilities are data (``supports_atomic_create``, ``durable``), so
callers and tests branch on flags, never on the class.

Every error a backend raises is a :class:`casstore.exceptions.CasstoreError`:
foreign errors (``OSError`` from the disk, botocore, aiohttp) are translated at
this edge and never reach the layers above.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from casstore.exceptions import CasstoreError, InvalidInputError

__all__ = ["Backend", "ObjectInfo", "validate_key", "recording_creations"]

#: the lists recording the objects ``put_blob`` creates in this context (innermost last)
_CREATED: contextvars.ContextVar[tuple[list[tuple[str, float]], ...]] = contextvars.ContextVar(
    "casstore_created", default=())


@contextlib.contextmanager
def recording_creations() -> Iterator[list[tuple[str, float]]]:
    """Record ``(key, mtime)`` of every object :meth:`Backend.put_blob` creates in this
    context (and in the tasks it hands to pools with ``contextvars.copy_context().run``),
    so that a failed log can remove what it alone created. Recordings nest: an object is
    recorded in every one open around its creation."""
    created: list[tuple[str, float]] = []
    token = _CREATED.set((*_CREATED.get(), created))
    try:
        yield created
    finally:
        _CREATED.reset(token)


_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9._@=+-]+$")


def validate_key(key: str) -> str:
    """Check that ``key`` is a safe relative object name and return it.

    Keys are built by casstore itself (digests, hashed names), so a bad key is a
    bug or a tampered record; either way it must never address anything outside
    the store root. A part may not start with ``.``: backends keep such names for
    their temporary files, which are never listed.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"object key must be a non-empty string, got {key!r}")
    for part in key.split("/"):
        if not _KEY_SEGMENT.match(part) or part.startswith("."):
            raise InvalidInputError(
                f"unsafe object key {key!r}: each '/'-separated part must be a plain name "
                "of letters, digits and ._@=+-, not starting with '.'"
            )
    return key


def nbytes(data: bytes | memoryview) -> int:
    """The length in bytes of an object's data."""
    return data.nbytes if isinstance(data, memoryview) else len(data)


@dataclass(frozen=True)
class ObjectInfo:
    """What a backend knows of a stored object: its size and last-modified time (epoch seconds)."""

    key: str
    size: int
    mtime: float


class Backend(abc.ABC):
    """Named byte strings with atomic create-if-absent.

    Subclasses implement the primitives ``_put_if_absent``, ``_put_blob``, ``_get``,
    ``_list``, ``_delete`` and ``_info``; the public methods validate keys and are
    what callers use.
    """

    #: ``put_if_absent`` is atomic across threads, processes and (for remote stores) machines.
    supports_atomic_create: bool = False
    #: After ``flush()`` returns, everything written before it survives a power loss.
    durable: bool = False
    #: An object is whole from the moment it can be seen, and stays so: publication is
    #: atomic and an acknowledged write is never lost (S3, memory). Where this is false,
    #: a writer that deduplicates against an object checks its length first (a power loss
    #: can leave a local file without its data; generic fsspec writes in place).
    whole_objects: bool = False
    #: Number of requests worth running concurrently (1 for a local disk).
    concurrency: int = 1
    #: ``delete_if_stale`` is exact: no ``touch`` that returned True is ever followed by the
    #: loss of the object it touched (otherwise a window of one round trip remains).
    exact_stale_delete: bool = False
    #: The objects are on this machine (a local directory, memory), so a request costs a
    #: system call rather than a round trip, and each object takes at least a block. New
    #: stores choose their content layout by it (:func:`casstore.objects.config.default_layout`),
    #: and a sealed run keeps its seal only, its other records removed (store format 5;
    #: see casstore/runs/compact.py).
    local: bool = False
    #: ``list_after`` takes each key's modification time from the listing itself, as the
    #: service stamped it (S3), and ``server_time`` tells the service's clock: a search can
    #: then list only an experiment's newest entries (casstore/runs/index.py).
    listing_times: bool = False

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ---- primitives --------------------------------------------------------------

    @abc.abstractmethod
    def _put_if_absent(self, key: str, data: bytes) -> bool: ...

    @abc.abstractmethod
    def _put_blob(self, key: str, data: bytes | memoryview) -> bool: ...

    @abc.abstractmethod
    def _get(self, key: str, start: int | None, end: int | None) -> bytes: ...

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[str]: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def _info(self, key: str) -> ObjectInfo: ...

    # ---- the public contract -------------------------------------------------------

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` holding ``data`` unless it exists; return whether this call created it.

        Exactly one of any number of racing callers gets ``True``; readers never see a
        partly written object.

        >>> b.put_if_absent("runs/r1/meta", b"...")   # doctest: +SKIP
        True
        """
        return self._put_if_absent(validate_key(key), bytes(data))

    def put_blob(self, key: str, data: bytes | memoryview) -> bool:
        """Store ``data`` under ``key``, idempotently; return whether this call wrote it.

        For content-addressed keys, where any two writers write the same bytes: an
        existing object of the same length is left as it is (and freshened, see
        :meth:`touch`). One of another length cannot hold these bytes (a partial object
        that a killed writer or a power loss left, or a copy damaged since) and is
        replaced, so storing content again repairs it.
        """
        wrote = self._put_blob(validate_key(key), data)
        recordings = _CREATED.get()
        # recorded only where a failed log removes them (exact stale deletes): elsewhere the
        # mtime would cost a request per object, and gc collects them
        if wrote and recordings and self.exact_stale_delete:
            try:
                made = (key, self._info(key).mtime)
            except CasstoreError:
                return wrote  # gone already (gc of a just-written object cannot happen: it is fresh)
            for created in recordings:
                created.append(made)
        return wrote

    def free_bytes(self) -> int | None:
        """Bytes free on the store's device for this writer; ``None`` where unknown (remote stores)."""
        return None

    def get(self, key: str) -> bytes:
        """Return the whole object; :class:`ObjectNotFoundError` if there is none."""
        return self._get(validate_key(key), None, None)

    def get_into(self, key: str, buf: bytearray) -> bytes | bytearray:
        """Return the whole object, read into ``buf`` (and ``buf`` returned) when it has
        exactly ``len(buf)`` bytes, so the caller chooses the memory that holds it; as new
        bytes otherwise, and on a backend that cannot read into a buffer (as :meth:`get`)."""
        return self._get_into(validate_key(key), buf)

    def _get_into(self, key: str, buf: bytearray) -> bytes | bytearray:
        return self._get(key, None, None)

    @contextlib.contextmanager
    def mapped(self, key: str) -> Iterator[bytes | memoryview]:
        """The whole object as a read-only buffer, for a reader that only scans it (hashing):
        on a local backend a memory map of its file, read without a copy; the object's bytes
        elsewhere (as :meth:`get`). The buffer is valid inside the ``with`` block only:

            with backend.mapped(key) as data:
                digest = blake3(data).hexdigest()
        """
        yield self.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` of the object."""
        if start < 0 or end < start:
            raise InvalidInputError(f"bad byte range [{start}, {end}) for {key!r}")
        return self._get(validate_key(key), start, end)

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        return self.exists_many([key])[0]

    def prefetch(self, keys: Sequence[str]) -> None:
        """Hint that these objects will be read soon, in this order. A local disk starts
        reading them into its cache without waiting; elsewhere this does nothing. Never
        fails: a missing object is reported when it is read."""

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        """Whether each key exists, in order. Backends override this to batch requests."""
        return [size is not None for size in self.sizes_many(keys)]

    def sizes_many(self, keys: Sequence[str]) -> list[int | None]:
        """The size of each object, in order; None where there is none."""
        for k in keys:
            validate_key(k)
        if self.concurrency <= 1 or len(keys) <= 1:
            return [self._stored_size(k) for k in keys]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._stored_size, keys))

    def _exists(self, key: str) -> bool:
        return self._stored_size(key) is not None

    def _stored_size(self, key: str) -> int | None:
        """The size of the object ``key``; None if there is none."""
        from casstore.exceptions import ObjectNotFoundError

        try:
            return self._info(key).size
        except ObjectNotFoundError:
            return None

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with ``prefix`` (recursively), in no set order.

        ``prefix`` is ``""``, a key, a key's first parts with a trailing ``/``, or a
        partial name (``"runs/ab"`` yields ``runs/ab/...`` and ``runs/abc/...``).
        """
        if prefix:
            validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
        return self._list(prefix)

    def list_after(self, prefix: str, start_after: str = "", stop_at: str | None = None) -> Iterator[tuple[str, float]]:
        """Yield ``(key, modification time)`` for the keys that start with ``prefix`` and sort
        after ``start_after``, in key order; after a key that sorts at or after ``stop_at``,
        stop (a few keys past it may come first). ``start_after`` is a key, or a name that is
        no key's directory (SeaweedFS's S3 skips the keys under a directory so named).

        >>> [k for k, _ in backend.list_after("runs/", "runs/a", "runs/c")]  # doctest: +SKIP
        ['runs/b1', 'runs/b2']
        """
        from casstore.exceptions import ObjectNotFoundError

        for key in sorted(self.list(prefix)):
            if key <= start_after:
                continue
            if stop_at is not None and key >= stop_at:
                return
            try:
                yield key, self.info(key).mtime
            except ObjectNotFoundError:
                continue  # deleted since the listing

    def server_time(self) -> float | None:
        """The service's clock now (seconds since the epoch), as its latest response said;
        ``None`` where the store has no clock of its own (a local directory, memory: the
        machine's clock is the store's)."""
        return None

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        self._delete(validate_key(key))

    def info(self, key: str) -> ObjectInfo:
        """Size and modification time of ``key``; :class:`ObjectNotFoundError` if missing."""
        return self._info(validate_key(key))

    def touch(self, key: str) -> bool:
        """Freshen ``key``: set its modification time to now (used by garbage collection's
        grace period, so an object a writer has just deduplicated against is kept).
        Return whether the object exists; touching a missing key creates nothing.

        A writer that deduplicates against an existing object touches it and, when
        ``touch`` returns False (garbage collection removed it meanwhile), writes it anew.
        """
        validate_key(key)
        return self._exists(key)

    def delete_if_stale(self, key: str, older_than: float) -> bool:
        """Delete ``key`` unless it was created or touched at or after ``older_than`` (epoch
        seconds, the store's clock); return whether this call deleted it.

        Garbage collection's only way to delete content. Here the check and the delete
        are two requests; backends with ``exact_stale_delete`` make them one step.
        """
        from casstore.exceptions import ObjectNotFoundError

        validate_key(key)
        try:
            if self._info(key).mtime >= older_than:
                return False
        except ObjectNotFoundError:
            return False
        self._delete(key)
        return True

    def clean_tmp(self, older_than: float) -> int:
        """Remove what killed writers left behind (temporary files) older than ``older_than``
        and finish interrupted stale deletes; return how many files were handled."""
        return 0

    def flush(self) -> None:
        """Durability barrier: everything written before the call survives a power loss
        once it returns (on backends where ``durable`` is true). Callers flush data
        before publishing a record that references it."""

    def flush_only(self, keys: Sequence[str]) -> None:
        """A barrier for ``keys`` alone: they survive a power loss once it returns; what
        else was written waits for the next :meth:`flush` (a sealed run's records that
        its seal makes redundant need none). The default flushes everything."""
        self.flush()

    def close(self) -> None:
        """Release resources (thread pools, sessions)."""
