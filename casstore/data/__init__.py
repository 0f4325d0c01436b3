"""``casstore.data``: datasets a run used, recorded with ``log_input`` (MLflow's ``mlflow.data``).

A dataset is named by the BLAKE3 of its content (``Dataset.digest``, 64 hex), so two runs that
trained on the same rows show the same digest, whoever loaded them and from where. The data
itself is not stored: the run records the dataset's name, digest, source, schema and profile.

>>> import numpy as np
>>> ds = from_numpy(np.arange(6).reshape(3, 2), source="data/train.npy", name="train")
>>> ds.name, len(ds.digest), ds.profile
('train', 64, {'features_shape': (3, 2), 'features_size': 6, 'features_nbytes': 48})

What the digest covers (so it can be recomputed): for an array, a header naming its dtype
and shape, then its bytes in C order (an object array: its values as JSON); for a DataFrame,
its column names and dtypes, then each column as an array; the index is not content.
Targets given apart (``targets=`` an array) are hashed after the features.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from casstore.exceptions import InvalidInputError
from casstore.objects.digest import new_hasher
from casstore.utils.mlflow_tags import MLFLOW_SOURCE_NAME

if TYPE_CHECKING:
    from casstore.models.signature import Schema
    from casstore.tracking.entities import DatasetEntity, DatasetInput

__all__ = ["Dataset", "DatasetSource", "FileSystemDatasetSource", "LocalArtifactDatasetSource", "S3ArtifactDatasetSource",
           "HTTPDatasetSource", "CodeDatasetSource", "PandasDataset", "NumpyDataset", "from_pandas", "from_numpy", "get_source", "content_digest"]


class DatasetSource:
    """Where a dataset came from: a URI or path (``source_type`` its scheme, ``local`` for a
    path), or, given none, the code that built it (``source_type`` ``code``). ``from_pandas``
    and ``from_numpy`` give MLflow's class for each: :class:`S3ArtifactDatasetSource`,
    :class:`LocalArtifactDatasetSource`, :class:`HTTPDatasetSource`, :class:`CodeDatasetSource`."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        if uri is None:
            self.source_type = "code"
        elif "://" in uri:
            scheme = uri.split("://", 1)[0].lower()
            # MLflow's names: HTTPDatasetSource's "http", LocalArtifactDatasetSource's "local"
            self.source_type = {"http": "http", "https": "http", "file": "local"}.get(scheme, scheme)
        else:
            self.source_type = "local"

    def _get_source_type(self) -> str:
        """MLflow's name for the source's type (``"s3"``, ``"local"``, ``"http"``, ``"code"``...)."""
        return self.source_type

    @property
    def url(self) -> str | None:
        """The URI of a source read over HTTP (MLflow's ``HTTPDatasetSource.url``)."""
        return self.uri if self.source_type == "http" else None

    def to_dict(self) -> dict[str, Any]:
        if self.uri is None:
            from casstore.tracking.context import context_tags

            return {"tags": {MLFLOW_SOURCE_NAME: context_tags()[MLFLOW_SOURCE_NAME]}}
        return {"url" if self.source_type == "http" else "uri": self.uri}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSource:
        """The source a dataset record holds (``to_dict``'s output), as its class."""
        uri = d.get("url", d.get("uri"))
        return make_source(uri if isinstance(uri, str) else None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, source_json: str) -> DatasetSource:
        return cls.from_dict(json.loads(source_json))

    def load(self, dst_path: str | os.PathLike[str] | None = None) -> str:
        """Fetch the source's file into ``dst_path`` (a new temporary directory without one)
        and return its local path; a local path is returned as it is unless ``dst_path`` is
        given. Remote URIs are read through fsspec (``s3://`` needs ``s3fs``)."""
        import shutil
        import tempfile

        if self.uri is None:
            raise InvalidInputError("a dataset built in code has no source to load; load its data where it was built")
        if self.source_type == "local":
            local = self.uri[len("file://"):] if self.uri.startswith("file://") else self.uri
            if dst_path is None:
                return os.path.abspath(local)
            os.makedirs(dst_path, exist_ok=True)
            return shutil.copy(local, os.path.join(dst_path, os.path.basename(local)))
        import fsspec

        target_dir = os.fspath(dst_path) if dst_path is not None else tempfile.mkdtemp(prefix="casstore-dataset-")
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, os.path.basename(self.uri.rstrip("/")) or "dataset")
        try:
            with fsspec.open(self.uri, "rb") as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
        except ImportError as e:
            raise InvalidInputError(f"loading {self.uri} needs the fsspec filesystem for its scheme: {e}") from e
        return target

    def __repr__(self) -> str:
        return f"<{type(self).__name__} uri={self.uri!r}>"


class FileSystemDatasetSource(DatasetSource):
    """A source named by a path or a filesystem URI (MLflow's ``FileSystemDatasetSource``)."""


class LocalArtifactDatasetSource(FileSystemDatasetSource):
    """A dataset source on the local filesystem."""


class S3ArtifactDatasetSource(FileSystemDatasetSource):
    """A dataset source in S3 (``s3://bucket/key``)."""


class HTTPDatasetSource(DatasetSource):
    """A dataset source read over HTTP(S); ``url`` is its address."""


class CodeDatasetSource(DatasetSource):
    """A dataset built in code: its record names the script (``mlflow.source.name``)."""


def make_source(uri: str | None) -> DatasetSource:
    """The source of ``uri`` as MLflow's class for its kind (``DatasetSource`` for other schemes)."""
    kind = DatasetSource(uri).source_type
    cls = {"code": CodeDatasetSource, "local": LocalArtifactDatasetSource, "http": HTTPDatasetSource, "s3": S3ArtifactDatasetSource}.get(kind, FileSystemDatasetSource)
    return cls(uri)


def _array_stream(h: Any, a: Any) -> None:
    import numpy as np

    arr = np.asarray(a)
    h.update(f"casstore-ndarray-v1\n{arr.dtype.str}\n{list(arr.shape)}\n".encode())
    if arr.dtype.kind in "OT":  # objects, variable-width strings: no fixed bytes
        h.update(json.dumps(arr.tolist(), default=str, sort_keys=True).encode())
    else:
        h.update(np.ascontiguousarray(arr).tobytes())


def content_digest(features: Any, targets: Any = None) -> str:
    """The BLAKE3 of a dataset's content (see the module docstring for what is hashed)."""
    h = new_hasher(parallel=False)
    _feed(h, features)
    if targets is not None and not isinstance(targets, str):
        h.update(b"casstore-targets\n")
        _feed(h, targets)
    return str(h.hexdigest())


def _feed(h: Any, data: Any) -> None:
    pd = _pandas_or_none()
    if pd is not None and isinstance(data, pd.DataFrame):
        h.update(b"casstore-dataframe-v1\n")
        h.update(json.dumps([[str(c), str(t)] for c, t in data.dtypes.items()]).encode())
        for col in data.columns:
            _array_stream(h, data[col].to_numpy())
    elif pd is not None and isinstance(data, pd.Series):
        _feed(h, data.to_frame())
    elif isinstance(data, dict):
        h.update(b"casstore-dict-v1\n")
        for k in sorted(data):
            h.update(json.dumps(str(k)).encode() + b"\n")
            _array_stream(h, data[k])
    else:
        _array_stream(h, data)


def _pandas_or_none() -> Any:
    try:
        import pandas
    except ImportError:
        return None
    return pandas


class Dataset:
    """A dataset a run can record with ``log_input``: ``name``, ``digest`` (BLAKE3 of its
    content), ``source``, ``schema`` and ``profile``."""

    def __init__(self, name: str, digest: str, source: DatasetSource, schema: str, profile: dict[str, Any]) -> None:
        self.name = name
        self.digest = digest
        self.source = source
        self._schema = schema
        self.profile = profile

    @property
    def schema(self) -> str:
        return self._schema

    def to_dict(self) -> dict[str, str]:
        """The dataset as its input record holds it (strings, as MLflow's ``to_dict``)."""
        return {
            "name": self.name,
            "digest": self.digest,
            "source": self.source.to_json(),
            "source_type": self.source.source_type,
            "schema": self._schema,
            "profile": json.dumps(self.profile, sort_keys=True),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} digest={self.digest[:12]}… source={self.source.uri!r}>"


class PandasDataset(Dataset):
    """A DataFrame as a dataset (``df``; ``targets`` names its target column); its ``schema``
    is a ``casstore.models.Schema``, as MLflow's is."""

    def __init__(self, df: Any, source: DatasetSource, name: str, targets: str | None, predictions: str | None) -> None:
        for col, what in ((targets, "targets"), (predictions, "predictions")):
            if col is not None and col not in df.columns:
                raise InvalidInputError(f"from_pandas: {what} column {col!r} is not a column of the DataFrame")
        self.df = df
        self.targets = targets
        self.predictions = predictions
        super().__init__(name, content_digest(df), source, _schema_json(df),
                         {"num_rows": int(len(df)), "num_elements": int(df.size)})

    @property
    def schema(self) -> Schema | None:  # type: ignore[override]  # MLflow's PandasDataset.schema is a Schema
        from casstore.models.signature import Schema

        return Schema.from_json(json.loads(self._schema)["mlflow_colspec"]) if self._schema else None


class NumpyDataset(Dataset):
    """An array (or a dict of arrays) as a dataset, with optional ``targets``."""

    def __init__(self, features: Any, source: DatasetSource, name: str, targets: Any) -> None:
        import numpy as np

        self.features = features
        self.targets = targets
        arrays = features if isinstance(features, dict) else {"features": features}
        if not all(isinstance(v, (np.ndarray, list)) for v in arrays.values()):
            raise InvalidInputError("from_numpy takes a numpy array or a dict of numpy arrays")
        profile: dict[str, Any] = {}
        for key, value in arrays.items():
            a = np.asarray(value)
            prefix = "features" if not isinstance(features, dict) else f"features_{key}"
            profile.update({f"{prefix}_shape": tuple(a.shape), f"{prefix}_size": int(a.size), f"{prefix}_nbytes": int(a.nbytes)})
        if targets is not None:
            t = np.asarray(targets)
            profile.update({"targets_shape": tuple(t.shape), "targets_size": int(t.size), "targets_nbytes": int(t.nbytes)})
        super().__init__(name, content_digest(features, targets), source, _schema_json(features), profile)


def _schema_json(data: Any) -> str:
    from casstore.models.signature import infer_schema

    try:
        return json.dumps({"mlflow_colspec": infer_schema(data).to_dict()})
    except (InvalidInputError, TypeError, ValueError):
        return ""


def _source(source: object) -> DatasetSource:
    if source is None:
        return make_source(None)
    if isinstance(source, DatasetSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        return make_source(os.fspath(source))
    raise InvalidInputError(f"dataset source must be a path or URI, got {type(source).__name__}")


def _no_digest(digest: object) -> None:
    if digest is not None:
        raise InvalidInputError(
            "casstore names a dataset by the BLAKE3 of its content, so digest= cannot be given; leave it out"
        )


def from_pandas(
    df: Any, source: str | os.PathLike[str] | DatasetSource | None = None, targets: str | None = None,
    name: str | None = None, digest: str | None = None, predictions: str | None = None,
) -> PandasDataset:
    """A DataFrame as a dataset for ``log_input``; ``source`` says where it was read from."""
    pd = _pandas_or_none()
    if pd is None or not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"from_pandas takes a pandas DataFrame, got {type(df).__name__}")
    _no_digest(digest)
    return PandasDataset(df, _source(source), name or "dataset", targets, predictions)


def get_source(dataset: Dataset | DatasetEntity | DatasetInput) -> DatasetSource:
    """Where a dataset came from, given the dataset, or a run's record of it
    (``run.inputs.dataset_inputs[i]`` or its ``.dataset``), as MLflow's ``get_source``."""
    from casstore.tracking.entities import DatasetEntity, DatasetInput

    if isinstance(dataset, Dataset):
        return dataset.source
    entity = dataset.dataset if isinstance(dataset, DatasetInput) else dataset
    if not isinstance(entity, DatasetEntity):
        raise InvalidInputError(f"get_source takes a dataset or a run's dataset input, got {type(dataset).__name__}")
    try:
        recorded = json.loads(entity.source) if entity.source else {}
    except ValueError:
        recorded = {"uri": entity.source}
    return DatasetSource.from_dict(recorded if isinstance(recorded, dict) else {})


def from_numpy(
    features: Any, source: str | os.PathLike[str] | DatasetSource | None = None, targets: Any = None,
    name: str | None = None, digest: str | None = None,
) -> NumpyDataset:
    """A numpy array (or a dict of arrays) as a dataset for ``log_input``."""
    _no_digest(digest)
    return NumpyDataset(features, _source(source), name or "dataset", targets)
