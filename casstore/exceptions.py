"""Every error casstore raises, under one root.

::

    CasstoreError
    ├── StoreConfigError          the store's casstore.json is missing, malformed or unsupported
    ├── StoreUnavailableError     the store URL cannot be reached or opened (also OSError)
    ├── ObjectNotFoundError       no object, record, run or model by that name (also FileNotFoundError)
    ├── IntegrityError            stored bytes do not hash to the digest that names them
    ├── CorruptRecordError        a stored record cannot be decoded or is malformed
    ├── InvalidInputError         bad input from the caller (also ValueError)
    │   ├── InvalidDigestError    a string that is not a 64-hex BLAKE3 digest
    │   ├── UnsafePathError       an artifact path that is absolute, has '..', or escapes its root
    │   └── LocalFileError        a local file that is missing, a directory, or unreadable
    ├── ImmutableArtifactError    a different value at a name that is already bound
    │   └── ArtifactPathConflictError  an artifact path that would be both a file and a directory
    └── RunStateError             the run is sealed, not active, or in the wrong state

    DamagedRunWarning (UserWarning)  a run was skipped, or shown without the records that
                                     failed their checks (each one named)
    LinkWarning (UserWarning)        a logged directory's symbolic links that point outside it
                                     (logged) or to directories (not followed), each one named

Each message says what went wrong, where, and what to do. Callers may catch the
builtin classes (``FileNotFoundError``, ``ValueError``, ``OSError``) where those fit.
"""

from __future__ import annotations

__all__ = [
    "CasstoreError",
    "StoreConfigError",
    "StoreUnavailableError",
    "ObjectNotFoundError",
    "IntegrityError",
    "CorruptRecordError",
    "InvalidInputError",
    "InvalidDigestError",
    "UnsafePathError",
    "LocalFileError",
    "ImmutableArtifactError",
    "ArtifactPathConflictError",
    "RunStateError",
    "MlflowException",
    "DamagedRunWarning",
    "LinkWarning",
]


class CasstoreError(Exception):
    """Root of every error casstore raises."""


class StoreConfigError(CasstoreError):
    """The store's configuration cannot be honoured by this version of casstore."""


class StoreUnavailableError(CasstoreError, OSError):
    """The store URL cannot be reached or opened."""


class ObjectNotFoundError(CasstoreError, FileNotFoundError):
    """An object, record, run or model that was asked for does not exist."""


class IntegrityError(CasstoreError):
    """Stored bytes do not match the digest that names them.

    ``obj`` names the object, ``expected`` and ``actual`` are the two digests.
    """

    def __init__(self, obj: str, expected: str, actual: str, detail: str = "") -> None:
        self.obj = obj
        self.expected = expected
        self.actual = actual
        msg = (
            f"integrity check failed for {obj}: expected blake3 {expected}, got {actual}"
            + (f" ({detail})" if detail else "")
            + ". The stored copy is corrupt; run `casstore verify --all` to see what it affects."
        )
        super().__init__(msg)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.obj, self.expected, self.actual))


class CorruptRecordError(CasstoreError):
    """A stored record cannot be decoded or lacks required fields: the store is damaged."""


class InvalidInputError(CasstoreError, ValueError):
    """Bad input from the caller."""


class InvalidDigestError(InvalidInputError):
    """A string that should be a 64-character lowercase hex BLAKE3 digest is not."""


class UnsafePathError(InvalidInputError):
    """A path that is absolute, contains '..', or would escape its root."""


class LocalFileError(InvalidInputError):
    """A local file given to casstore is missing, a directory, or unreadable."""


class ImmutableArtifactError(CasstoreError):
    """A name that is already bound was given a different value."""

    def __init__(self, what: str, existing: str, new: str, hint: str = "") -> None:
        self.what = what
        self.existing = existing
        self.new = new
        super().__init__(
            f"{what} is already bound to {existing}; refusing to rebind it to {new}. "
            + (hint or "Bindings are immutable: log the new value under another name, or in a new run.")
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.what, self.existing, self.new))


class ArtifactPathConflictError(ImmutableArtifactError):
    """An artifact path that would make one name of a run both a file and a directory.

    ``path`` is the path being logged; ``bound`` the path of the run it conflicts with:
    either the file that ``path`` would lie under, or a file under ``path`` (which makes
    ``path`` a directory).
    """

    def __init__(self, run_id: str, path: str, bound: str) -> None:
        self.run_id = run_id
        self.path = path
        self.bound = bound
        self.what = f"artifact {path!r} of run {run_id}"
        self.existing = bound
        self.new = path
        if path.startswith(bound + "/"):
            why = f"{bound!r} is already a file of that run, so it cannot also be a directory holding {path!r}"
        else:
            why = f"{path!r} is already a directory of that run (it holds {bound!r}), so it cannot also be a file"
        CasstoreError.__init__(
            self,
            f"cannot log artifact {path!r} in run {run_id}: {why}. A run's artifact paths are immutable: "
            "log it under another path, or in a new run.",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.run_id, self.path, self.bound))


class RunStateError(CasstoreError):
    """The run is sealed, not active, or otherwise in the wrong state for the call."""


# MLflow code catches ``mlflow.exceptions.MlflowException``; let it catch ours.
MlflowException = CasstoreError


class DamagedRunWarning(UserWarning):
    """A run was skipped by a listing, or read without the records that failed their checks;
    the message names each and what it affects (``casstore verify --all`` lists them all)."""


class LinkWarning(UserWarning):
    """A directory being logged has symbolic links that point outside it (their files are
    logged) or to directories (not followed); the message names each."""
