"""Every error casstore raises, under one root.

::

    CasstoreError (= MlflowException)
    ├── StoreConfigError          the store's casstore.json is missing, malformed or unsupported
    ├── StoreUnavailableError     the store URL cannot be reached or opened (also OSError)
    │   └── StoreFullError        the store's disk is full (or over quota)
    ├── ObjectNotFoundError       no object, record, run or model by that name (also FileNotFoundError)
    ├── IntegrityError            stored bytes do not hash to the digest that names them
    ├── CorruptRecordError        a stored record cannot be decoded or is malformed
    ├── InvalidInputError         bad input from the caller (also ValueError)
    │   ├── ResourceAlreadyExistsError  a name that is taken (experiment, registered model, model directory)
    │   ├── InvalidDigestError    a string that is not a 64-hex BLAKE3 digest
    │   ├── UnsafePathError       an artifact path that is absolute, has '..', or escapes its root
    │   └── LocalFileError        a local file that is missing, a directory, or unreadable
    ├── ImmutableArtifactError    a different value at a name that is already bound
    │   └── ArtifactPathConflictError  an artifact path that would be both a file and a directory
    ├── RunStateError             the run is sealed, not active, or in the wrong state
    └── RestException             MLflow's tracking-server error (never raised: no server)

    DamagedRecordWarning (UserWarning)  something was skipped by a listing, or shown without
    │                                the records that failed their checks (each one named)
    └── DamagedRunWarning            a run was skipped, or shown without the records that
                                     failed their checks (each one named)
    LinkWarning (UserWarning)        a logged directory's symbolic links that point outside it
                                     (logged) or to directories (not followed), each one named

Each message says what went wrong, where, and what to do. Callers may catch the
builtin classes (``FileNotFoundError``, ``ValueError``, ``OSError``) where those fit.

MLflow code catches ``MlflowException`` and reads its ``error_code``: ``CasstoreError`` is
``MlflowException`` here, and each class carries the code MLflow gives the same failure
(``RESOURCE_DOES_NOT_EXIST`` for a missing run, ``INVALID_PARAMETER_VALUE`` for bad input,
``RESOURCE_ALREADY_EXISTS`` for a taken name, ...), as a string, as MLflow's ``error_code``.
``MlflowException(message, error_code=...)`` can be raised as in MLflow (the code given as
its name, or as MLflow's protobuf number).
"""

from __future__ import annotations

__all__ = [
    "CasstoreError",
    "StoreConfigError",
    "StoreUnavailableError",
    "StoreFullError",
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
    "ResourceAlreadyExistsError",
    "MlflowException",
    "RestException",
    "DamagedRecordWarning",
    "DamagedRunWarning",
    "LinkWarning",
]

# MLflow's error codes, as ``error_code`` holds them
INTERNAL_ERROR = "INTERNAL_ERROR"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
INVALID_STATE = "INVALID_STATE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
DATA_LOSS = "DATA_LOSS"
TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
BAD_REQUEST = "BAD_REQUEST"

#: MLflow's protobuf numbers of the codes above (``mlflow.protos.databricks_pb2``)
_CODE_NUMBERS = {
    1: INTERNAL_ERROR, 1000: INVALID_PARAMETER_VALUE, 1003: INVALID_STATE, 1011: DATA_LOSS,
    3001: RESOURCE_ALREADY_EXISTS, 3002: RESOURCE_DOES_NOT_EXIST, 2: TEMPORARILY_UNAVAILABLE, 4: BAD_REQUEST,
}
_HTTP_STATUS = {
    INVALID_PARAMETER_VALUE: 400, BAD_REQUEST: 400, RESOURCE_ALREADY_EXISTS: 400,
    RESOURCE_DOES_NOT_EXIST: 404, TEMPORARILY_UNAVAILABLE: 503,
}


class CasstoreError(Exception):
    """Root of every error casstore raises (also ``MlflowException``).

    ``error_code`` is MLflow's name for the failure (``RESOURCE_DOES_NOT_EXIST`` ...):
    each class has its own, and ``error_code=`` (a name or MLflow's number) overrides it.
    """

    #: MLflow's error code for this kind of failure
    error_code: str = INTERNAL_ERROR

    def __init__(self, message: object = "", error_code: str | int | None = None, **kwargs: object) -> None:
        super().__init__(message)
        self.message = str(message)
        if error_code is not None:
            self.error_code = _CODE_NUMBERS.get(error_code, INTERNAL_ERROR) if isinstance(error_code, int) else str(error_code)

    def get_http_status_code(self) -> int:
        """The HTTP status MLflow's server answers this error with."""
        return _HTTP_STATUS.get(self.error_code, 500)

    def serialize_as_json(self) -> str:
        import json

        return json.dumps({"error_code": self.error_code, "message": self.message})

    @classmethod
    def invalid_parameter_value(cls, message: object, **kwargs: object) -> CasstoreError:
        """An error with code ``INVALID_PARAMETER_VALUE`` (MLflow's constructor of that name)."""
        return cls(message, error_code=INVALID_PARAMETER_VALUE)


class RestException(CasstoreError):
    """MLflow's error for a tracking server's error answer, built from its JSON body
    (``error_code``, ``message``). casstore talks to no tracking server, so none of its
    calls raises this: it is here so that scripts which catch it keep working (their
    ``except MlflowException`` clauses catch what casstore raises)."""

    def __init__(self, json: dict[str, object]) -> None:
        self.json = json
        code = str(json.get("error_code") or INTERNAL_ERROR)
        message = json["message"] if "message" in json else f"Response: {json}"
        super().__init__(f"{code}: {message}", error_code=code)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.json,))


class StoreConfigError(CasstoreError):
    """The store's configuration cannot be honoured by this version of casstore."""

    error_code = INVALID_STATE


class StoreUnavailableError(CasstoreError, OSError):
    """The store URL cannot be reached or opened."""

    error_code = TEMPORARILY_UNAVAILABLE


class StoreFullError(StoreUnavailableError):
    """No space is left on the store's device (or its quota is used up). ``needed`` and
    ``free`` are in bytes when known."""

    def __init__(self, message: object = "", needed: int | None = None, free: int | None = None,
                 **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.needed = needed
        self.free = free


class ObjectNotFoundError(CasstoreError, FileNotFoundError):
    """An object, record, run or model that was asked for does not exist."""

    error_code = RESOURCE_DOES_NOT_EXIST


class IntegrityError(CasstoreError):
    """Stored bytes do not match the digest that names them.

    ``obj`` names the object, ``expected`` and ``actual`` are the two digests.
    """

    error_code = DATA_LOSS

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

    error_code = DATA_LOSS


class InvalidInputError(CasstoreError, ValueError):
    """Bad input from the caller."""

    error_code = INVALID_PARAMETER_VALUE


class InvalidDigestError(InvalidInputError):
    """A string that should be a 64-character lowercase hex BLAKE3 digest is not."""


class UnsafePathError(InvalidInputError):
    """A path that is absolute, contains '..', or would escape its root."""


class LocalFileError(InvalidInputError):
    """A local file given to casstore is missing, a directory, or unreadable."""


class ImmutableArtifactError(CasstoreError):
    """A name that is already bound was given a different value."""

    error_code = INVALID_PARAMETER_VALUE

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


class ResourceAlreadyExistsError(InvalidInputError):
    """A name that is already taken: an experiment, a registered model, a model directory."""

    error_code = RESOURCE_ALREADY_EXISTS


class RunStateError(CasstoreError):
    """The run is sealed, not active, or otherwise in the wrong state for the call."""

    error_code = INVALID_STATE


# MLflow code catches ``mlflow.exceptions.MlflowException``; let it catch ours.
MlflowException = CasstoreError
"""MLflow's name for :class:`CasstoreError`: ``except MlflowException`` catches every casstore error."""


class DamagedRecordWarning(UserWarning):
    """A listing left out something whose records failed their checks (a run, a registered
    model), or showed it without them; the message names each and what it affects
    (``casstore verify --all`` lists them all)."""


class DamagedRunWarning(DamagedRecordWarning):
    """A run was skipped by a listing, or read without the records that failed their checks;
    the message names each and what it affects (``casstore verify --all`` lists them all)."""


class LinkWarning(UserWarning):
    """A directory being logged has symbolic links that point outside it (their files are
    logged) or to directories (not followed); the message names each."""
