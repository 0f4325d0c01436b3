"""A store on Amazon S3 or any S3-compatible service (MinIO, Ceph, R2), through s3fs.

``s3://bucket/prefix`` names the store; credentials, region and endpoint come from
the standard AWS configuration (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``, instance roles), and
``storage_options`` go to :class:`s3fs.S3FileSystem` unchanged.

Create-if-absent is S3's conditional write, ``PutObject`` with ``If-None-Match: *``:
the service decides atomically, so racing writers on any number of machines get
exactly one winner. Some S3-compatible services ignore the condition; the store is
probed once, before this process first writes to it (a probe object is written twice
under ``<prefix>/.casstore-probe/``; the second write must be refused), and a store
whose service does not honour it is refused with :class:`StoreConfigError`, unless
the caller opts into the weaker mode (``allow_unsafe_create``), where
``supports_atomic_create`` is false. Opening a store and reading it send no write, so
listing, searching, showing and verifying work with read-only credentials.

Transient failures (5xx, throttling, timeouts, dropped connections) are retried with
exponential backoff and full jitter; 403, 404 and 412 never are. botocore's own
retries are turned off (unless the caller configures them) so that one layer, this
one, decides; a create that meets a 412 after a lost reply is resolved exactly by
reading back the writer token it carries. Every botocore and aiohttp error leaves
this module as a :class:`casstore.exceptions.CasstoreError`.

Casstore's own options, taken out of ``storage_options`` (or the URL query, or the
environment) before the rest goes to s3fs:

``allow_unsafe_create`` (``CASSTORE_S3_ALLOW_UNSAFE_CREATE``)
    open a store whose service ignores ``If-None-Match`` (no atomic create-if-absent).
``concurrency`` (``CASSTORE_S3_CONCURRENCY``, default 16)
    requests run at once by batch operations and the objects layer.
``max_attempts`` (``CASSTORE_S3_MAX_ATTEMPTS``, default 8)
    attempts per request before a transient failure is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from casstore.backend.base import Backend, ObjectInfo, validate_key
from casstore.exceptions import (
    CasstoreError,
    InvalidInputError,
    ObjectNotFoundError,
    StoreConfigError,
    StoreFullError,
    StoreUnavailableError,
)

__all__ = ["S3Backend", "PROBE_DIR"]

T = TypeVar("T")

#: where the probe before the first write writes, under the store's prefix
PROBE_DIR = ".casstore-probe"
DEFAULT_CONCURRENCY = 16
DEFAULT_MAX_ATTEMPTS = 8
_BACKOFF_BASE = 0.1
_BACKOFF_CAP = 10.0
_OWN_OPTIONS = ("allow_unsafe_create", "concurrency", "max_attempts")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

_THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "OperationAborted",
        "ConditionalRequestConflict",
        "XAmzContentSHA256Mismatch",
    }
)
_DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
    }
)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
#: the service is out of space or the bucket over its quota (MinIO, Ceph RGW; HTTP 507)
_FULL_CODES = frozenset({"507", "XMinioStorageFull", "QuotaExceeded", "InsufficientStorage"})
_UNSUPPORTED_CODES = frozenset({"501", "NotImplemented", "InvalidArgument", "InvalidRequest"})

#: user metadata naming the writer of a created object (resolves lost replies exactly)
_WRITER_META = "casstore-writer"

# (file-system key, bucket, prefix) -> probe outcome, so a process probes each store once
_PROBED: dict[tuple[str, str, str], str] = {}
_PROBE_LOCK = threading.Lock()

#: what botocore reads from the environment when it builds a client: endpoint, credentials,
#: profile, region. s3fs hands back the file system it made earlier in the process for the
#: same arguments even when these have changed since, so casstore keys its own reuse by them.
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
# (process, arguments and environment) -> s3fs file system
_FILESYSTEMS: dict[tuple[int, str], Any] = {}
_FS_LOCK = threading.Lock()
_HONOURED, _IGNORED, _REJECTED = "honoured", "ignored", "rejected"


class _ShortRead(Exception):
    """A response body shorter than its Content-Length (a dropped connection)."""


def _error_code(e: BaseException) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a botocore ClientError; ("", 0) for anything else."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return "", 0
    code = str((response.get("Error") or {}).get("Code") or "")
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return code or str(status), status


def _transient(e: BaseException) -> bool | None:
    """None if ``e`` is final; else whether the failed request may still have taken effect
    (assumed, unless the service said it throttled the request)."""
    import botocore.exceptions as bx

    code, status = _error_code(e)
    if code or status:
        if code in _THROTTLE_CODES or status == 429:
            return False
        if code in _TRANSIENT_CODES or status in (500, 502, 503, 504):
            return True
        return None
    if isinstance(e, (bx.HTTPClientError, bx.IncompleteReadError, bx.ConnectionError, _ShortRead)):
        return True
    if isinstance(e, (asyncio.TimeoutError, ConnectionError)):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp comes with aiobotocore
        return None
    if isinstance(e, aiohttp.ClientError):
        return True
    return None


def _backoff(attempt: int) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2**attempt)))


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise InvalidInputError(f"S3 store option {name}={value!r} is not a boolean; use true or false")


def _positive_int(value: object, name: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if isinstance(value, bool) or n < 1:
        raise InvalidInputError(f"S3 store option {name}={value!r} must be a positive integer")
    return n


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, faster on S3's ISO 8601 times (a listing's
    ``LastModified``): ``datetime.fromisoformat`` where botocore goes through dateutil,
    which took three quarters of the time of parsing a listing page. Anything else (the
    RFC 1123 dates of headers, epoch seconds) goes to botocore's parser; the result is
    the same instant, timezone-aware, either way."""
    if isinstance(value, str) and len(value) > 19 and value[10:11] == "T":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    from botocore.utils import parse_timestamp as botocore_parse

    return botocore_parse(value)  # type: ignore[no-any-return]


def _seconds(value: Any) -> float:
    """A listing's ``LastModified`` as seconds since the epoch."""
    return float(value.timestamp()) if hasattr(value, "timestamp") else 0.0


def fast_timestamps(session: Any) -> None:
    """Have the responses of ``session`` (an aiobotocore session; s3fs makes one per file
    system) parse their timestamps with :func:`parse_timestamp` (botocore's documented
    ``set_parser_defaults``; parsers are made per response, so it holds from now on)."""
    factory = session.get_component("response_parser_factory") if session is not None else None
    if factory is not None:
        factory.set_parser_defaults(timestamp_parser=parse_timestamp)


class S3Backend(Backend):
    """Objects under ``s3://bucket/prefix``; create-if-absent is ``If-None-Match: *``.

    >>> S3Backend("my-bucket/team/store")          # doctest: +SKIP
    S3Backend('s3://my-bucket/team/store')
    """

    #: S3 acknowledges a PUT once the object is stored redundantly
    durable = True
    #: a PUT is atomic: an object is seen whole or not at all
    whole_objects = True
    concurrency = DEFAULT_CONCURRENCY
    listing_times = True

    def __init__(self, location: str, storage_options: dict[str, Any] | None = None) -> None:
        path, _, query = location.partition("?")
        bucket, _, prefix = path.rstrip("/").partition("/")
        prefix = prefix.strip("/")
        if not bucket:
            raise InvalidInputError(f"S3 store URL s3://{location} names no bucket; use s3://<bucket>/<prefix>")
        if prefix:
            validate_key(prefix)
        super().__init__(f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}")
        self.bucket = bucket
        self.prefix = prefix
        opts = dict(storage_options or {})
        own = {k: opts.pop(k) for k in _OWN_OPTIONS if k in opts}
        for k, v in parse_qsl(query, keep_blank_values=True):
            if k not in _OWN_OPTIONS:
                raise InvalidInputError(
                    f"unknown option {k!r} in store URL s3://{location}; the URL takes {', '.join(_OWN_OPTIONS)} "
                    "(pass s3fs options as storage_options)"
                )
            own.setdefault(k, v)
        allow_unsafe = _flag(
            own.get("allow_unsafe_create", os.environ.get("CASSTORE_S3_ALLOW_UNSAFE_CREATE", "")), "allow_unsafe_create"
        )
        self.concurrency = _positive_int(
            own.get("concurrency", os.environ.get("CASSTORE_S3_CONCURRENCY", DEFAULT_CONCURRENCY)), "concurrency"
        )
        self.max_attempts = _positive_int(
            own.get("max_attempts", os.environ.get("CASSTORE_S3_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)), "max_attempts"
        )
        self._fs_options = opts
        self._fs = self._make_fs(dict(opts))
        self._pid = os.getpid()
        self._allow_unsafe = allow_unsafe
        self._atomic = True
        #: probed before the first write, never at open: a reader sends no write
        self._probe_pending = True
        self._probe_lock = threading.Lock()
        #: the service's clock minus this machine's, from the ``Date`` of the latest response
        self._clock_offset: float | None = None

    @property
    def supports_atomic_create(self) -> bool:
        """Whether create-if-absent is atomic here: asking probes the service (a write) if
        this process has not yet."""
        self._require_writable()
        return self._atomic

    @supports_atomic_create.setter
    def supports_atomic_create(self, value: bool) -> None:
        self._atomic = value

    # ---- setup -------------------------------------------------------------------

    @property
    def fs(self) -> Any:
        """The s3fs file system of this process (a forked child builds its own: s3fs's
        event loop and connections do not survive a fork)."""
        if self._pid != os.getpid():
            self._fs = self._make_fs(dict(self._fs_options))
            self._pid = os.getpid()
            self._probe_lock = threading.Lock()  # another thread may have held it at the fork
        return self._fs

    def _make_fs(self, opts: dict[str, Any]) -> Any:
        try:
            import s3fs
        except ImportError as e:
            raise StoreUnavailableError(
                f"cannot open {self.url}: S3 stores need s3fs, which is not installed. "
                "Install it with: pip install 'casstore[s3]'"
            ) from e
        from fsspec.utils import tokenize

        config = dict(opts.pop("config_kwargs", None) or {})
        # one retry layer (ours, with jitter and create-resolution), unless the caller asks for botocore's
        config.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
        config.setdefault("max_pool_connections", max(10, self.concurrency))
        opts["use_listings_cache"] = False  # never answer from a stale listing
        reuse = not opts.pop("skip_instance_cache", False)
        env = [os.environ.get(k) for k in _CLIENT_ENV]
        key = (os.getpid(), tokenize(sorted(opts.items(), key=str), sorted(config.items(), key=str), env))
        self._fs_key = key[1]
        with _FS_LOCK:
            fs = _FILESYSTEMS.get(key) if reuse else None
        if fs is not None:
            return fs
        try:
            fs = s3fs.S3FileSystem(config_kwargs=config, skip_instance_cache=True, **opts)
            fs.connect()  # builds the client (no request yet): unknown options fail here
        except TypeError as e:
            raise InvalidInputError(f"bad storage_options for {self.url}: {e}") from e
        except Exception as e:
            raise self._translate(e, "opening the store", 1) from e
        fast_timestamps(fs.session)
        if reuse:
            with _FS_LOCK:
                for stale in [k for k in _FILESYSTEMS if k[0] != key[0]]:  # a parent's, before a fork
                    del _FILESYSTEMS[stale]
                fs = _FILESYSTEMS.setdefault(key, fs)
        return fs

    def _probe(self) -> None:
        token = (self._fs_key, self.bucket, self.prefix)  # the client's options and environment
        with _PROBE_LOCK:
            outcome = _PROBED.get(token)
        if outcome is None:
            outcome = self._sync(self._probe_async)  # read-only credentials: AccessDenied, probed again next write
            with _PROBE_LOCK:
                _PROBED[token] = outcome
        self._probe_pending = False
        if outcome == _HONOURED:
            self._atomic = True
            return
        if not self._allow_unsafe:
            what = "ignores" if outcome == _IGNORED else "does not support"
            raise StoreConfigError(
                f"the S3 service behind {self.url} {what} conditional writes (PutObject with If-None-Match: *), "
                "so concurrent writers could overwrite each other's run records. Use a service (or a version "
                "of it) that honours them, as AWS S3 does; or, if only one writer at a time uses this store, "
                "accept last-writer-wins for racing writers with allow_unsafe_create=true (storage_options, "
                "URL query ?allow_unsafe_create=true, or CASSTORE_S3_ALLOW_UNSAFE_CREATE=1)."
            )
        self._atomic = False  # creates check, then write (no If-None-Match)

    async def _probe_async(self) -> str:
        key = f"{PROBE_DIR}/{uuid.uuid4().hex}"

        async def put(data: bytes) -> str:
            try:
                await self._call("put_object", Key=self._full(key), Body=data, IfNoneMatch="*")
                return "created"
            except Exception as e:
                code, status = _error_code(e)
                if code == "PreconditionFailed" or status == 412:
                    return "refused"
                if code in _UNSUPPORTED_CODES or status == 501:
                    return _REJECTED
                raise

        if await self._retrying(f"probe {key!r}", lambda: put(b"casstore probe 1\n")) == _REJECTED:
            return _REJECTED
        try:
            second = await self._retrying(f"probe {key!r}", lambda: put(b"casstore probe 2\n"))
        finally:
            # a probe object left behind (no s3:DeleteObject, say) is harmless: listings skip it
            with contextlib.suppress(StoreUnavailableError):
                await self._retrying(f"delete {key!r}", lambda: self._delete_async(key))
        return {"refused": _HONOURED, "created": _IGNORED}.get(second, second)

    def _require_writable(self) -> None:
        if self._probe_pending:
            with self._probe_lock:  # writer threads wait for one probe
                if self._probe_pending:
                    self._probe()

    # ---- plumbing ----------------------------------------------------------------

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _sync(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        from fsspec.asyn import sync

        result: T = sync(self.fs.loop, fn, *args, **kwargs)
        return result

    async def _call(self, method: str, **kwargs: Any) -> Any:
        await self.fs.set_session()
        s3 = await self.fs.get_s3(self.bucket)
        fn = getattr(s3, method)
        response = await fn(**self.fs._get_s3_method_kwargs(fn, Bucket=self.bucket, **kwargs))
        date = ((response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get("date")
        if date:  # the service's clock, to the second (the middle of that second, as good a guess as any)
            with contextlib.suppress(TypeError, ValueError):
                self._clock_offset = parsedate_to_datetime(date).timestamp() + 0.5 - time.time()
        return response

    async def _retrying(
        self, what: str, attempt: Callable[[], Awaitable[T]], on_retry: Callable[[bool], None] | None = None
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying transient failures with backoff.

        ``on_retry`` is told, before each retry, whether the failed attempt may have taken effect.
        """
        n = 0
        while True:
            try:
                return await attempt()
            except CasstoreError:
                raise
            except Exception as e:
                n += 1
                maybe_applied = _transient(e)
                if maybe_applied is None or n >= self.max_attempts:
                    raise self._translate(e, what, n) from e
                if on_retry is not None:
                    on_retry(maybe_applied)
                await asyncio.sleep(_backoff(n))

    def _endpoint(self) -> str:
        fs = getattr(self, "_fs", None)
        s3 = getattr(fs, "_s3", None)
        url = getattr(getattr(s3, "meta", None), "endpoint_url", None) or getattr(fs, "endpoint_url", None)
        return str(url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3")

    def _translate(self, e: Exception, what: str, attempts: int) -> CasstoreError:
        import botocore.exceptions as bx

        where = f"S3 store {self.url} (endpoint {self._endpoint()})"
        if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return StoreUnavailableError(
                f"{where}: no AWS credentials found ({e}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE, or pass storage_options={'key': ..., 'secret': ...} "
                "(anon=True for a public bucket)."
            )
        if isinstance(e, bx.ProfileNotFound):
            return StoreUnavailableError(f"{where}: {e}. Check AWS_PROFILE and ~/.aws/config.")
        code, status = _error_code(e)
        if code or status:
            msg = str((getattr(e, "response", {}).get("Error") or {}).get("Message") or e)
            if code == "NoSuchBucket":
                return StoreUnavailableError(
                    f"{where}: bucket {self.bucket!r} does not exist. Create it first "
                    f"(aws s3 mb s3://{self.bucket}), or check the bucket name and AWS_ENDPOINT_URL."
                )
            if code in _FULL_CODES or status == 507:
                why = "the bucket is over its quota" if "quota" in code.lower() else "the service is out of space"
                return StoreFullError(f"{where}: {what} failed ({code}): {msg}: {why}")
            if code in _DENIED_CODES:
                return StoreUnavailableError(
                    f"{where}: {what} was refused ({code}): {msg}. The credentials were rejected or lack "
                    f"permission: check AWS_ACCESS_KEY_ID / AWS_PROFILE, and that the policy allows s3:GetObject, "
                    f"s3:PutObject, s3:DeleteObject and s3:ListBucket on {self.bucket}/{self.prefix}."
                )
            if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
                return StoreUnavailableError(
                    f"{where}: {what} failed ({code}): {msg}. The bucket is probably in another region: "
                    "set AWS_REGION (or client_kwargs={'region_name': ...})."
                )
            if _transient(e) is not None:
                return StoreUnavailableError(
                    f"{where}: {what} still failed after {attempts} attempts ({code}, HTTP {status}): {msg}. "
                    "The service is unavailable or throttling; try again later, or raise max_attempts."
                )
            return StoreUnavailableError(f"{where}: {what} failed ({code}, HTTP {status}): {msg}")
        if _transient(e) is not None:
            return StoreUnavailableError(
                f"{where}: {what} failed after {attempts} attempts: {type(e).__name__}: {e}. "
                "Check the network and the endpoint (AWS_ENDPOINT_URL), then run the same command again: "
                "what was stored stays stored and only the rest is sent."
            )
        return StoreUnavailableError(f"{where}: {what} failed: {type(e).__name__}: {e}")

    # ---- async operations ---------------------------------------------------------

    async def _head_async(self, key: str) -> dict[str, Any] | None:
        async def attempt() -> dict[str, Any] | None:
            try:
                head: dict[str, Any] = await self._call("head_object", Key=self._full(key))
                return head
            except Exception as e:
                if _error_code(e)[0] in _MISSING_CODES:
                    return None
                raise

        return await self._retrying(f"HEAD {key!r}", attempt)

    async def _exists_all(self, keys: Sequence[str]) -> list[bool]:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(key: str) -> bool:
            async with sem:
                return await self._head_async(key) is not None

        found = await asyncio.gather(*(one(k) for k in keys), return_exceptions=True)
        for f in found:  # every request has finished: report the first failure
            if isinstance(f, BaseException):
                raise f
        return [bool(f) for f in found]

    async def _create_async(self, key: str, data: bytes, *, exact: bool) -> bool:
        """Conditional PUT; whether this call created the object.

        A request can take effect and still fail for its sender (a lost reply; aiohttp
        also resends a PUT once, unasked, when a reused connection drops), so a 412 is not
        proof that someone else won. With ``exact``, each create carries a writer token in
        its metadata and a 412 is resolved by reading the token back. Without it (content-
        addressed blobs, where any writer's bytes are the same), a 412 after an attempt
        that may have landed counts as created.
        """
        token = uuid.uuid4().hex if exact else ""
        extra = {"Metadata": {_WRITER_META: token}} if exact else {}
        maybe_ours = False

        def note(maybe_applied: bool) -> None:
            nonlocal maybe_ours
            maybe_ours = maybe_ours or maybe_applied

        async def attempt() -> bool:
            try:
                await self._call("put_object", Key=self._full(key), Body=data, IfNoneMatch="*", **extra)
                return True
            except Exception as e:
                code, status = _error_code(e)
                if code != "PreconditionFailed" and status != 412:
                    raise
            if not exact:
                return maybe_ours
            head = await self._head_async(key)
            return head is not None and (head.get("Metadata") or {}).get(_WRITER_META) == token

        return await self._retrying(f"create {key!r}", attempt, note)

    async def _put_async(self, key: str, data: bytes) -> None:
        await self._retrying(f"PUT {key!r}", lambda: self._call("put_object", Key=self._full(key), Body=data))

    async def _get_async(self, key: str, start: int | None, end: int | None) -> bytes:
        extra = {} if start is None else {"Range": f"bytes={start}-{(end or start) - 1}"}

        async def attempt() -> bytes:
            try:
                resp = await self._call("get_object", Key=self._full(key), **extra)
            except Exception as e:
                code, status = _error_code(e)
                if code in _MISSING_CODES:
                    raise ObjectNotFoundError(f"no object {key!r} in store {self.url}") from e
                if code == "InvalidRange" or status == 416:
                    return b""
                raise
            async with resp["Body"] as body:
                data: bytes = await body.read()
            expected = resp.get("ContentLength")
            if expected is not None and len(data) != int(expected):
                raise _ShortRead(f"got {len(data)} of {expected} bytes")
            return data

        return await self._retrying(f"GET {key!r}", attempt)

    async def _delete_async(self, key: str) -> None:
        try:
            await self._call("delete_object", Key=self._full(key))
        except Exception as e:
            if _error_code(e)[0] not in _MISSING_CODES:
                raise

    async def _touch_async(self, key: str) -> bool:
        full = self._full(key)

        async def attempt() -> bool:
            try:
                await self._call(
                    "copy_object",
                    Key=full,
                    CopySource={"Bucket": self.bucket, "Key": full},
                    MetadataDirective="REPLACE",
                    Metadata={"casstore-touched": f"{time.time():.3f}"},
                )
            except Exception as e:
                if _error_code(e)[0] in _MISSING_CODES:
                    return False
                raise
            return True

        return await self._retrying(f"touch {key!r}", attempt)

    async def _list_page(self, prefix: str, token: str | None,
                         start_after: str = "") -> tuple[list[tuple[str, float]], str | None]:
        extra = {"ContinuationToken": token} if token else {"StartAfter": start_after} if start_after else {}

        async def attempt() -> Any:
            return await self._call("list_objects_v2", Prefix=prefix, **extra)

        page = await self._retrying(f"LIST {prefix!r}", attempt)
        items = [(str(o["Key"]), _seconds(o.get("LastModified"))) for o in page.get("Contents") or ()]
        nxt = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        return items, nxt

    # ---- primitives --------------------------------------------------------------

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        self._require_writable()
        if self._atomic:
            return self._sync(self._create_async, key, data, exact=True)
        # weaker mode (explicitly allowed): check, then write
        if self._exists(key):
            return False
        self._sync(self._put_async, key, data)
        return True

    def _put_blob(self, key: str, data: bytes | memoryview) -> bool:
        self._require_writable()
        body = data if isinstance(data, bytes) else bytes(data)
        for _ in range(3):
            if self._atomic and self._sync(self._create_async, key, body, exact=False):
                return True
            size = self._stored_size(key)  # one HEAD: whether it is there, and its length
            if size is None:
                if not self._atomic:  # weaker mode (explicitly allowed): check, then write
                    self._sync(self._put_async, key, body)
                    return True
                continue  # deleted since the create was refused (garbage collection): create it anew
            if size != len(body):  # not these bytes: a damaged copy
                self._sync(self._put_async, key, body)
                return True
            if self._sync(self._touch_async, key):  # freshened: garbage collection keeps it
                return False
            # deleted between the two requests (garbage collection): write it anew
        raise StoreUnavailableError(
            f"S3 store {self.url}: {key!r} kept vanishing while it was being written; "
            "is a garbage collection with no grace period running?"
        )

    def _get(self, key: str, start: int | None, end: int | None) -> bytes:
        if start is not None and (end or 0) <= start:
            self._info(key)  # a missing object is still an error
            return b""
        return self._sync(self._get_async, key, start, end)

    def _list(self, prefix: str) -> Iterator[str]:
        return (key for key, _ in self._list_pages(prefix))

    def _list_pages(self, prefix: str, start_after: str = "", stop_at: str | None = None) -> Iterator[tuple[str, float]]:
        base = f"{self.prefix}/" if self.prefix else ""
        probe = f"{base}{PROBE_DIR}/"
        token: str | None = None
        while True:
            items, token = self._sync(self._list_page, base + prefix, token, base + start_after if start_after else "")
            for full, mtime in items:
                if full.endswith("/") or full.startswith(probe):
                    continue
                yield full[len(base) :], mtime
            if token is None or (stop_at is not None and items and items[-1][0] >= base + stop_at):
                return

    def list_after(self, prefix: str, start_after: str = "", stop_at: str | None = None) -> Iterator[tuple[str, float]]:
        # docstring inherited
        for k in (prefix, start_after, stop_at or ""):
            if k:
                validate_key(k[:-1] if k.endswith("/") else k)
        return self._list_pages(prefix, start_after, stop_at)

    def server_time(self) -> float | None:
        # docstring inherited
        offset = self._clock_offset
        return None if offset is None else time.time() + offset

    def _delete(self, key: str) -> None:
        self._sync(self._retrying, f"delete {key!r}", lambda: self._delete_async(key))

    def _info(self, key: str) -> ObjectInfo:
        head = self._sync(self._head_async, key)
        if head is None:
            raise ObjectNotFoundError(f"no object {key!r} in store {self.url}")
        modified = head.get("LastModified")
        mtime = modified.timestamp() if modified is not None and hasattr(modified, "timestamp") else time.time()
        return ObjectInfo(key, int(head.get("ContentLength") or 0), mtime)

    def _exists(self, key: str) -> bool:
        return self._sync(self._head_async, key) is not None

    # ---- derived operations, batched ----------------------------------------------

    def exists_many(self, keys: Sequence[str]) -> list[bool]:
        # docstring inherited
        for k in keys:
            validate_key(k)
        if not keys:
            return []
        return self._sync(self._exists_all, list(keys))

    def touch(self, key: str) -> bool:
        # docstring inherited
        validate_key(key)
        self._require_writable()
        return self._sync(self._touch_async, key)
