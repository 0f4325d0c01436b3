"""``Model``: a model's ``MLmodel`` file, as MLflow's ``mlflow.models.Model``."""

from __future__ import annotations

import os
from typing import Any

from casstore.exceptions import InvalidInputError, LocalFileError
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
        signature = fields.get("signature")
        self.signature = ModelSignature.from_dict(signature) if isinstance(signature, dict) else None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Model:
        from casstore.models.local import is_model_uri, local_model_dir

        if is_model_uri(path):
            return cls(written_mlmodel(str(path), None)[2])
        import yaml

        file = os.path.join(local_model_dir(path), mlmodel.MLMODEL)
        try:
            with open(file, encoding="utf-8") as f:
                fields = yaml.safe_load(f)
        except OSError as e:
            raise LocalFileError(f"no MLmodel file at {file!r} ({e.strerror}): give a model directory or a model URI") from e
        if not isinstance(fields, dict):
            raise InvalidInputError(f"{file!r} is not an MLmodel file (a YAML mapping)")
        return cls(fields)

    def get_input_schema(self) -> Any:
        return self.signature.inputs if self.signature else None

    def get_output_schema(self) -> Any:
        return self.signature.outputs if self.signature else None

    def get_params_schema(self) -> Any:
        return self.signature.params if self.signature else None

    def __repr__(self) -> str:
        return f"<Model {self.artifact_path!r} run_id={self.run_id!r} flavors={sorted(self.flavors)}>"
