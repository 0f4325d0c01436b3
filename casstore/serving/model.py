"""The model a server answers with: loaded once, verified, and swapped whole.

:func:`load_served` fetches the model a URI names with every byte verified before
anything is unpickled (``casstore.models.fetch``), or reads a local MLflow model
directory, hashing each file as it is read; it returns a :class:`ServedModel` that
knows its digest and registry version. A :class:`ModelSlot` holds the one being
served: each request takes it once, so it is answered and labelled by one model.
:class:`AliasFollower` re-resolves an alias (or ``latest``) on an interval and puts a
new version in the slot only once it is fetched, verified and loaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from casstore import __version__
from casstore.exceptions import InvalidInputError
from casstore.models.uri import parse_model_uri
from casstore.serving.payload import INVALID_PARAMETER_VALUE, ScoringError, parse_request, predictions_body

if TYPE_CHECKING:
    from casstore.models.pyfunc import PyFuncModel
    from casstore.models.signature import Schema
    from casstore.runs import RunStore

__all__ = [
    "DIGEST_HEADER",
    "VERSION_HEADER",
    "AliasFollower",
    "ModelSlot",
    "ServedModel",
    "is_local_dir",
    "load_served",
]

DIGEST_HEADER = "x-casstore-model-digest"
VERSION_HEADER = "x-casstore-model-version"
log = logging.getLogger("casstore.serving")

#: opens the store a URI is resolved in (a new one in each worker process)
StoreOpener = Callable[[], "RunStore"]


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what proves which one it is."""

    model: PyFuncModel
    uri: str
    digest: str
    #: the name clients use for it: the registered model's, else the model's own
    name: str
    registered_name: str | None = None
    version: int | None = None
    run_id: str | None = None
    loaded_at: float = field(default_factory=time.time)
    headers: tuple[tuple[bytes, bytes], ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        version = f"{self.registered_name}/{self.version}" if self.version is not None else "none"
        object.__setattr__(
            self,
            "headers",
            ((DIGEST_HEADER.encode(), self.digest.encode()), (VERSION_HEADER.encode(), version.encode("utf-8", "replace"))),
        )

    @property
    def input_schema(self) -> Schema | None:
        return self.model.metadata.get_input_schema()

    @property
    def output_schema(self) -> Schema | None:
        return self.model.metadata.get_output_schema()

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """The model's predictions for ``data`` (and ``params``): its signature's refusal is
        a 400 that says what; any other failure a 400 that names only the exception's type
        (the server's log has the traceback)."""
        try:
            return self.model.predict(data, params=params)
        except InvalidInputError as e:
            raise ScoringError(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception as e:  # noqa: BLE001 - the model's own failure on this input
            log.warning("the model failed on a request", exc_info=True)
            raise ScoringError(
                f"the model failed on this input ({type(e).__name__}); check that the input fits the model "
                "(the server's log has the details)"
            ) from None

    def invoke(self, body: bytes, content_type: str | None) -> bytes:
        """An ``/invocations`` request's answer: parse, check, predict, write as JSON."""
        parsed = parse_request(body, content_type, self.input_schema)
        params = parsed.params
        signature = self.model.metadata.signature
        if params and (signature is None or signature.params is None):
            _warn_params()
            params = None
        return predictions_body(self.predict(parsed.data, params))

    def describe(self) -> dict[str, Any]:
        """What ``/version`` reports."""
        entry = self.model.metadata.entry
        return {
            "casstore_version": __version__,
            "model_uri": self.uri,
            "model_digest": self.digest,
            "model_name": self.name,
            "registered_model": self.registered_name,
            "version": self.version,
            "run_id": self.run_id,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            "files": {p: f.digest for p, f in sorted(entry.files.items())},
        }


_params_warned = threading.Event()


def _warn_params() -> None:
    if not _params_warned.is_set():
        _params_warned.set()
        log.warning("requests carry params, which the model's signature does not declare: they are ignored, as MLflow does")


class ModelSlot:
    """The model being served; replaced whole (one reference), never changed in place."""

    def __init__(self, model: ServedModel) -> None:
        self.current = model


def is_local_dir(uri: str) -> bool:
    """Whether ``uri`` names a local directory rather than a model URI."""
    return ":" not in uri.split("/", 1)[0] and os.path.isdir(uri)


def load_served(uri: str, open_store: StoreOpener | None) -> ServedModel:
    """Fetch (verified) and load the model ``uri`` names; a local directory is read
    and hashed. ``open_store`` is called only for a model URI."""
    from casstore.models.fetch import fetch_model_uri, read_model_dir
    from casstore.models.pyfunc import pyfunc_from_fetched

    if is_local_dir(uri):
        fetched = read_model_dir(uri)
    else:
        parse_model_uri(uri)  # a clear error for a bad URI before the store is opened
        if open_store is None:
            raise InvalidInputError(f"serving {uri!r} needs a store")
        fetched = fetch_model_uri(uri, open_store())
    try:
        model = pyfunc_from_fetched(fetched, uri)
    finally:
        fetched.cleanup()
    resolved = fetched.resolved
    mv = resolved.version if resolved is not None else None
    entry = fetched.entry
    return ServedModel(
        model,
        uri,
        fetched.model_digest,
        name=mv.name if mv is not None else entry.name,
        registered_name=mv.name if mv is not None else None,
        version=mv.version if mv is not None else None,
        run_id=entry.run_id,
    )


def check_followable(uri: str) -> None:
    """``--follow-alias`` needs a URI whose target can move: an alias or ``latest``."""
    p = parse_model_uri(uri) if not is_local_dir(uri) else None
    if p is None or p.kind != "models" or (p.alias is None and not p.latest):
        raise InvalidInputError(
            f"--follow-alias follows models:/<name>@<alias> or models:/<name>/latest, not {uri!r}; "
            "serve such a URI, or drop --follow-alias"
        )


class AliasFollower(threading.Thread):
    """Every ``interval`` seconds, resolve the slot's URI again; when it names another
    digest, load that model (verified) and only then put it in the slot. A failure
    leaves the model being served in place and is tried again next time."""

    def __init__(self, slot: ModelSlot, open_store: StoreOpener, interval: float) -> None:
        super().__init__(name="casstore-alias-follower", daemon=True)
        self.slot = slot
        self.open_store = open_store
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        from casstore.models.uri import resolve_model_uri

        store: RunStore | None = None
        failure = ""
        while not self.stopped.wait(self.interval):
            current = self.slot.current
            try:
                opened = store = store or self.open_store()
                if resolve_model_uri(current.uri, opened).model_digest == current.digest:
                    continue
                new = load_served(current.uri, lambda: opened)
            except Exception as e:  # noqa: BLE001 - keep serving what is loaded, say why (once per new reason)
                if str(e) != failure:
                    failure = str(e)
                    log.warning("could not follow %s (still serving digest %s): %s", current.uri, current.digest[:12], e)
                continue
            failure = ""
            self.slot.current = new
            log.info(
                "%s now serves %s (digest %s), was %s",
                new.uri, f"version {new.version}" if new.version is not None else "a new model", new.digest, current.digest,
            )

    def stop(self) -> None:
        self.stopped.set()
