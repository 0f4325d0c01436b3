"""``Model``: a model's ``MLmodel`` file, as MLflow's ``mlflow.models.Model``."""

from __future__ import annotations

import os
from typing import Any

from casstore.exceptions import InvalidInputError, LocalFileError, ObjectNotFoundError
from casstore.models import mlmodel
from casstore.models.save import ModelInfo, written_mlmodel
from casstore.models.signature import ModelSignature

__all__ = ["Model", "ModelInfo"]


class Model:
    """A model's ``MLmodel`` file, as MLflow's ``mlflow.models.Model``: ``Model.load`` reads it
    from a logged model (``runs:/``, ``models:/``, ``cas:``; verified) or a local model
    directory, without loading the model itself."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.artifact_path = fields.get("artifact_path")
        self.flavors: dict[str, Any] = dict(fields.get("flavors") or {})
        self.run_id = fields.get("run_id")
        self.model_uuid = fields.get("model_uuid")
        self.utc_time_created = fields.get("utc_time_created")
        self.saved_input_example_info = fields.get("saved_input_example_info")
        self.metadata = fields.get("metadata")
        self.mlflow_version = fields.get("mlflow_version")
        self.model_size_bytes = fields.get("model_size_bytes")
        self.env_vars = fields.get("env_vars")
        self.prompts = fields.get("prompts")
        self.resources = fields.get("resources")
        #: MLflow 3's id of the logged model (its model digest) when loaded by a model URI; a
        #: model directory does not know it (its ``MLmodel`` is one of the files the digest covers)
        self.model_id: str | None = fields.get("model_id")
        #: the URI or directory it was loaded from
        self._source: str | None = None
        signature = fields.get("signature")
        self.signature = ModelSignature.from_dict(signature) if isinstance(signature, dict) else None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        from casstore.models.local import is_model_uri, local_model_dir

        if is_model_uri(path):
            digest, _, fields = written_mlmodel(str(path), None)
            model = cls(fields)
            model.model_id = digest
            model._source = str(path)
            return model
        import yaml

        file = os.path.join(local_model_dir(path), mlmodel.MLMODEL)
        try:
            with open(file, encoding="utf-8") as f:
                fields = yaml.safe_load(f)
        except OSError as e:
            raise LocalFileError(f"no MLmodel file at {file!r} ({e.strerror}): give a model directory or a model URI") from e
        if not isinstance(fields, dict):
            raise InvalidInputError(f"{file!r} is not an MLmodel file (a YAML mapping)")
        model = cls(fields)
        model._source = os.fspath(path)
        return model

    def load_input_example(self, path: str | os.PathLike[str] | None = None) -> Any:
        """The input example saved with the model (a DataFrame, an array or a dict, as it was
        given), or ``None`` if it has none. ``path`` is the model's URI or directory; by
        default the one this ``Model`` was loaded from."""
        info = self.saved_input_example_info
        if not isinstance(info, dict):
            return None
        return mlmodel.parse_input_example(self._example_bytes(info, path), info, self.get_input_schema())

    def load_input_example_params(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
        """The params saved with the input example (``input_example=(data, params)``), or ``None``."""
        info = self.saved_input_example_info
        if not isinstance(info, dict) or not info.get("params"):
            return None
        return mlmodel.parse_example_params(self._example_bytes(info, path), info)

    def _example_bytes(self, info: dict[str, Any], path: str | os.PathLike[str] | None) -> bytes:
        source = os.fspath(path) if path is not None else self._source
        if source is None:
            raise InvalidInputError("give the model's URI or directory: load_input_example(path)")
        from casstore.models.local import is_model_uri, local_model_dir
        from casstore.models.save import model_file

        name = str(info.get("artifact_path") or mlmodel.INPUT_EXAMPLE)
        if is_model_uri(source):
            data = model_file(source, name, None)[2]
            if data is None:
                raise ObjectNotFoundError(f"model {source!r} names an input example {name!r} but has no such file")
        else:
            try:
                with open(os.path.join(local_model_dir(source), name), "rb") as f:
                    data = f.read()
            except OSError as e:
                raise LocalFileError(f"no input example {name!r} in model directory {source!r} ({e.strerror})") from e
        return data

    def get_input_schema(self) -> Any:
        return self.signature.inputs if self.signature else None

    def get_output_schema(self) -> Any:
        return self.signature.outputs if self.signature else None

    def get_params_schema(self) -> Any:
        return self.signature.params if self.signature else None

    def __repr__(self) -> str:
        return f"<Model {self.artifact_path!r} run_id={self.run_id!r} flavors={sorted(self.flavors)}>"
