"""Reading artifacts back: MLflow's ``mlflow.artifacts`` functions.

An artifact is named either by a URI ``runs:/<run_id>/<path>`` or by ``run_id``
plus ``artifact_path``. Every byte read is verified against its BLAKE3 digest;
downloads write only under ``dst_path`` and never leave a partial file.

>>> import casstore, casstore.artifacts
>>> casstore.set_tracking_uri("memory://doc-artifacts")
>>> with casstore.start_run() as run:
...     casstore.log_dict({"lr": 0.1}, "config.yaml")
>>> casstore.artifacts.load_dict(f"runs:/{run.info.run_id}/config.yaml")
{'lr': 0.1}
"""

from __future__ import annotations

import os
from typing import Any

from casstore.exceptions import InvalidInputError
from casstore.runs import RunView
from casstore.tracking import _artifacts
from casstore.tracking.client import Client
from casstore.tracking.entities import FileInfo
from casstore.tracking.uri import parse_runs_uri

__all__ = ["download_artifacts", "load_text", "load_dict", "load_image", "list_artifacts"]


def _locate(
    artifact_uri: str | None, run_id: str | None, artifact_path: str | None, tracking_uri: str | None
) -> tuple[Client, RunView, str]:
    if artifact_uri is not None and (run_id is not None or artifact_path is not None):
        raise InvalidInputError("pass either artifact_uri, or run_id (with an optional artifact_path), not both")
    if artifact_uri is not None:
        if not isinstance(artifact_uri, str) or not artifact_uri.startswith("runs:"):
            raise InvalidInputError(
                f"artifact URI {artifact_uri!r} is not supported: use runs:/<run_id>/<artifact path>"
            )
        run_id, path = parse_runs_uri(artifact_uri)
    elif run_id is not None:
        path = artifact_path or ""
    else:
        raise InvalidInputError("name the artifact: pass artifact_uri='runs:/<run_id>/<path>' or run_id=...")
    client = Client(tracking_uri)
    return client, client.store.get_run(run_id), path


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | os.PathLike[str] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Download an artifact file or directory, verified, into ``dst_path`` (a new temp dir if
    ``None``) under its last name, as MLflow does (``runs:/<id>/plots/roc.png`` lands at
    ``<dst_path>/roc.png``); return the local path."""
    client, view, path = _locate(artifact_uri, run_id, artifact_path, tracking_uri)
    return _artifacts.download(client.store, view, path, dst_path)


def list_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    tracking_uri: str | None = None,
) -> list[FileInfo]:
    """Files (with size and BLAKE3 digest) and directories directly under a run path."""
    _, view, path = _locate(artifact_uri, run_id, artifact_path, tracking_uri)
    return _artifacts.list_entries(view, path)


def _read(artifact_uri: str) -> tuple[bytes, str]:
    client, view, path = _locate(artifact_uri, None, None, None)
    return _artifacts.read_bytes(client.store, view, path), path


def load_text(artifact_uri: str) -> str:
    """An artifact's content as text (UTF-8), verified."""
    data, path = _read(artifact_uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"artifact {path!r} is not UTF-8 text ({e})") from e


def load_dict(artifact_uri: str) -> dict[Any, Any]:
    """An artifact written as a JSON or YAML mapping (``log_dict`` writes either), parsed;
    :class:`~casstore.exceptions.InvalidInputError` if it holds anything else (text, a list)."""
    data, path = _read(artifact_uri)
    try:
        return _artifacts.parse_dict(data, path)
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"artifact {path!r} is not UTF-8 text ({e})") from e


def load_image(artifact_uri: str) -> Any:
    """An image artifact as a PIL image (Pillow needed)."""
    import io

    try:
        from PIL import Image
    except ImportError as e:
        raise InvalidInputError("load_image needs Pillow: pip install pillow") from e
    data, _ = _read(artifact_uri)
    img = Image.open(io.BytesIO(data))
    img.load()
    return img
