"""The model entry: one manifest entry of kind ``model``, and its canonical form.

A logged model is its files (ordinary artifacts of the run under ``<name>/``) plus
this entry, which lists every file with its digest and says how to load it::

    {v: 1, kind: "model", name, run_id, created,
     flavors: {"sklearn": {...}, "python_function": {...}},
     signature: {inputs, outputs, params} | None,
     input_example: {artifact_path, type, ...} | None,
     requirements: ["scikit-learn==1.5.2", ...],
     metadata: {...} | None, tags: {str: str},
     model_type: str, step: int,        (only when given: MLflow 3's ``log_model``)
     files: {"model.pkl": {digest, size, recipe}, "MLmodel": {...}, ...}}

The entry is stored as canonical msgpack (``objects/codec.py``); the BLAKE3 of those
bytes is the model digest, which a registry version pins. A file's ``recipe`` (absent
from entries logged before casstore recorded it) is the BLAKE3 of its stored recipe's
bytes: pinned by the model digest, it lets a loader trust the chunk list, so chunks
verified one by one make up the file without hashing the whole again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from casstore._paths import clean_artifact_path
from casstore.exceptions import CorruptRecordError, InvalidInputError, UnsafePathError
from casstore.objects.codec import canonical, pack
from casstore.objects.digest import hash_bytes, is_digest

__all__ = ["ENTRY_VERSION", "FileRef", "ModelEntry", "entry_digest"]

ENTRY_VERSION = 1


def entry_digest(entry: dict[str, Any]) -> str:
    """The model digest: BLAKE3 of the entry's canonical msgpack encoding."""
    return hash_bytes(pack(entry))


@dataclass(frozen=True)
class FileRef:
    """One file of a model: its path inside the model directory, digest and size, and
    the BLAKE3 of its recipe's stored bytes (None in entries logged without it)."""

    path: str
    digest: str
    size: int
    recipe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"digest": self.digest, "size": self.size}
        if self.recipe is not None:
            d["recipe"] = self.recipe  # absent, not nil, so entries without it keep their bytes
        return d


@dataclass(frozen=True)
class ModelEntry:
    """A decoded, checked model entry."""

    name: str
    flavors: dict[str, dict[str, Any]]
    files: dict[str, FileRef]
    run_id: str | None = None
    created: str = ""
    signature: dict[str, Any] | None = None
    input_example: dict[str, Any] | None = None
    requirements: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    #: MLflow 3's ``log_model(model_type=...)``, a free-form label such as ``"classifier"``
    model_type: str | None = None
    #: MLflow 3's ``log_model(step=...)``: the step of the run's metrics that are the model's
    step: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored (before canonical encoding); ``model_type`` and ``step`` only
        when given, so an entry without them keeps the digest it always had."""
        optional = {k: v for k, v in (("model_type", self.model_type), ("step", self.step)) if v not in (None, 0)}
        return {
            **optional,
            "v": ENTRY_VERSION,
            "kind": "model",
            "name": self.name,
            "run_id": self.run_id,
            "created": self.created,
            "flavors": self.flavors,
            "signature": self.signature,
            "input_example": self.input_example,
            "requirements": list(self.requirements),
            "metadata": self.metadata,
            "tags": dict(self.tags),
            "files": {p: f.to_dict() for p, f in sorted(self.files.items())},
        }

    @property
    def digest(self) -> str:
        return entry_digest(self.to_dict())

    @property
    def size(self) -> int:
        """Total bytes of the model's files."""
        return sum(f.size for f in self.files.values())

    def flavor(self, name: str) -> dict[str, Any]:
        conf = self.flavors.get(name)
        if conf is None:
            raise InvalidInputError(
                f"model {self.name!r} has no {name!r} flavor (it has {sorted(self.flavors)}); "
                "load it with the flavor it was logged with"
            )
        return conf

    @classmethod
    def from_dict(cls, d: object, where: str = "model entry") -> ModelEntry:
        """Check a decoded entry; :class:`CorruptRecordError` if it is malformed or unsafe."""
        if not isinstance(d, dict):
            raise CorruptRecordError(f"{where} is not a record (got {type(d).__name__})")
        v = d.get("v")
        if not isinstance(v, int) or v < 1:
            raise CorruptRecordError(f"{where} has no valid format version")
        if v > ENTRY_VERSION:
            raise CorruptRecordError(f"{where} has format version {v}, newer than this casstore reads ({ENTRY_VERSION}); upgrade casstore")
        if d.get("kind") != "model":
            raise CorruptRecordError(f"{where} is of kind {d.get('kind')!r}, not 'model'")
        name, flavors, files = d.get("name"), d.get("flavors"), d.get("files")
        if not isinstance(name, str) or not isinstance(flavors, dict) or not isinstance(files, dict) or not files:
            raise CorruptRecordError(f"{where} lacks its name, flavors or files")
        refs: dict[str, FileRef] = {}
        for p, f in files.items():
            try:
                clean = clean_artifact_path(p, "model file path")
            except UnsafePathError as e:
                raise CorruptRecordError(f"{where} lists an unsafe file path: {e}") from e
            if (
                clean != p
                or not isinstance(f, dict)
                or not is_digest(f.get("digest"))
                or not isinstance(f.get("size"), int)
                or ("recipe" in f and not is_digest(f["recipe"]))
            ):
                raise CorruptRecordError(f"{where} has a malformed file record for {p!r}: {f!r}")
            refs[p] = FileRef(p, f["digest"], f["size"], f.get("recipe"))
        for fl, conf in flavors.items():
            if not isinstance(fl, str) or not isinstance(conf, dict):
                raise CorruptRecordError(f"{where} has a malformed flavor {fl!r}")
        reqs = d.get("requirements") or []
        tags = d.get("tags") or {}
        if not isinstance(reqs, list) or not isinstance(tags, dict):
            raise CorruptRecordError(f"{where} has malformed requirements or tags")
        model_type, step = d.get("model_type"), d.get("step", 0)
        if not (model_type is None or isinstance(model_type, str)) or type(step) is not int:
            raise CorruptRecordError(f"{where} has a malformed model_type or step")
        return cls(
            name=name,
            flavors=flavors,
            files=refs,
            run_id=d.get("run_id"),
            created=str(d.get("created") or ""),
            signature=d.get("signature"),
            input_example=d.get("input_example"),
            requirements=[str(r) for r in reqs],
            metadata=d.get("metadata"),
            tags={str(k): str(t) for k, t in tags.items()},
            model_type=model_type,
            step=step,
        )


def check_metadata(metadata: object) -> dict[str, Any] | None:
    """``metadata`` as a record can hold it (str keys; str, numbers, bools, lists, dicts)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidInputError(f"model metadata must be a dict, got {type(metadata).__name__}")
    try:
        return canonical(metadata)  # type: ignore[no-any-return]
    except InvalidInputError as e:
        raise InvalidInputError(f"model metadata cannot be stored: {e}") from e
