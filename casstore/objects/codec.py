"""Canonical encoding of records: msgpack with sorted keys and fixed types.

Equal records give equal bytes, so a record's BLAKE3 is a stable name for it.
Every record carries a format version ``v``; fields are only ever added, with
defaults, never changed in meaning.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
from blake3 import blake3

from casstore.exceptions import CorruptRecordError, InvalidInputError

__all__ = ["pack", "unpack", "canonical", "pack_checked", "unpack_checked", "CHECK_FIELD"]

#: the field of a self-checking record that holds the BLAKE3 of the record without it
CHECK_FIELD = "b3"


#: values that are their own canonical form (bool included, floats are not: NaN is normalised)
_FLAT = frozenset({str, int, bytes, bool})


def canonical(obj: Any) -> Any:
    """Normalise ``obj`` to the canonical form: dicts with sorted str keys, lists for tuples."""
    t = type(obj)
    if t is str or t is int or t is bytes or obj is None or t is bool:
        return obj  # the common cases first: records are mostly flat dicts of these
    if isinstance(obj, dict):
        keys = list(obj)
        for k in keys:
            if not isinstance(k, str):
                raise InvalidInputError(f"record keys must be strings, got {k!r}")
        keys.sort()
        out = {}
        for k in keys:
            v = obj[k]
            t = type(v)
            out[k] = v if t is str or t is int or t is bytes or v is None or t is bool else canonical(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [x if type(x) in _FLAT or x is None else canonical(x) for x in obj]
    if isinstance(obj, bool) or isinstance(obj, (str, bytes, int)):
        return obj
    if isinstance(obj, float):
        if math.isnan(obj):
            return float("nan")
        return obj
    raise InvalidInputError(f"cannot encode a value of type {type(obj).__name__} in a record: {obj!r}")


def pack(obj: Any) -> bytes:
    """Canonical msgpack bytes of ``obj``."""
    return msgpack.packb(canonical(obj), use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes, what: str = "record", *, use_list: bool = True) -> Any:
    """Decode a record; :class:`~casstore.exceptions.CorruptRecordError` names ``what`` if it is not valid msgpack.
    ``use_list=False``: arrays as tuples (a tuple of numbers and strings costs the garbage
    collector nothing once seen, a list is traced at every full collection)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=use_list)
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        reason = str(e) or type(e).__name__
        raise CorruptRecordError(
            f"{what} is not a valid casstore record ({reason}); the store may be corrupt: "
            "run `casstore verify --all` to see what it affects"
        ) from e


def pack_checked(obj: dict[str, Any]) -> bytes:
    """Canonical msgpack of ``obj`` plus a ``b3`` field: the BLAKE3 of the record without it.

    A reader (:func:`unpack_checked`) recomputes it, so any damage to the record's bytes
    is found before a value is used, whatever name the record is stored under.
    """
    if CHECK_FIELD in obj:
        raise InvalidInputError(f"a self-checking record cannot have its own {CHECK_FIELD!r} field")
    body = canonical(obj)  # once: below, only the top level is sorted again, with the check in it
    check = blake3(msgpack.packb(body, use_bin_type=True)).hexdigest()
    return msgpack.packb(dict(sorted({**body, CHECK_FIELD: check}.items())), use_bin_type=True)  # type: ignore[no-any-return]


_CHECK_ENTRY = b"\xa2" + CHECK_FIELD.encode() + b"\xd9\x40"  # the key, then a 64-character str8


def _holds(data: bytes, check: str) -> bool:
    """Whether ``check`` is the BLAKE3 of ``data`` without its check field, taken from the
    bytes as they are: when the check is the map's first entry (as :func:`pack_checked`
    writes it when no key sorts before ``b3``), the rest of the map is the bytes that were
    hashed, less one in the entry count. Saves re-packing a large record to check it;
    ``False`` sends the caller to the re-packing check."""
    first = data[0] if data else 0
    if 0x81 <= first <= 0x8F:
        n, at = first & 0x0F, 1
    elif first == 0xDE and len(data) >= 3:
        n, at = int.from_bytes(data[1:3], "big"), 3
    else:
        return False
    if data[at:at + len(_CHECK_ENTRY)] != _CHECK_ENTRY:
        return False
    rest = n - 1
    head = bytes([0x80 | rest]) if rest < 16 else b"\xde" + rest.to_bytes(2, "big")
    h = blake3(head)
    h.update(memoryview(data)[at + len(_CHECK_ENTRY) + 64:])
    return h.hexdigest() == check


def unpack_checked(data: bytes, what: str = "record", *, required: bool = False, use_list: bool = True) -> Any:
    """Decode a record written by :func:`pack_checked` and check its ``b3`` field.

    A record without the field (written before records checked themselves) is returned
    as it is unless ``required``; a wrong or malformed check is a
    :class:`~casstore.exceptions.CorruptRecordError` naming ``what``.
    """
    rec = unpack(data, what, use_list=use_list)
    if not isinstance(rec, dict):
        return rec  # the caller's type check names it
    check = rec.pop(CHECK_FIELD, None)
    if check is None:
        if required:
            raise CorruptRecordError(
                f"{what} has no {CHECK_FIELD!r} check field, which records of its kind carry; the store may be "
                "corrupt: run `casstore verify --all` to see what it affects"
            )
        return rec
    if not isinstance(check, str) or not (_holds(data, check) or blake3(pack(rec)).hexdigest() == check):
        raise CorruptRecordError(
            f"{what} does not match its own BLAKE3 check: its bytes were changed after it was written; "
            "run `casstore verify --all` to see what it affects"
        )
    return rec
