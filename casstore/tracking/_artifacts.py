"""Artifact helpers shared by the fluent API, the client and ``casstore.artifacts``:
walking local directories, rendering text/dicts/figures/images, listing and
downloading a run's artifacts."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import tempfile
import uuid
import warnings
from typing import Any

from casstore._files import write_files, writer_count
from casstore._paths import clean_artifact_path, clean_optional_path, join_artifact_path, safe_destination
from casstore.exceptions import CorruptRecordError, InvalidInputError, LinkWarning, LocalFileError, ObjectNotFoundError
from casstore.runs import ArtifactEntry, RunHandle, RunStore, RunView
from casstore.tracking.entities import FileInfo

__all__ = [
    "log_local",
    "log_local_dir",
    "dict_bytes",
    "figure_bytes",
    "image_bytes",
    "image_series_files",
    "IMAGE_PREVIEW_SIZE",
    "list_entries",
    "download",
    "read_bytes",
    "parse_dict",
]


def walk_dir(local_dir: str, prefix: str) -> list[tuple[str, str]]:
    """``(artifact_path, local_path)`` of every file under ``local_dir``, with paths under
    ``prefix`` (already clean). The paths are checked when they are logged
    (``RunHandle.log_files``).

    Symbolic links follow one rule: a link to a file is logged as that file's content,
    wherever it points, and one that points outside ``local_dir`` is named in a
    :class:`LinkWarning`; a link to a directory is not followed (it may lead anywhere, or
    back to itself) and is named in the same warning. A link loop or a dangling link is a
    :class:`LocalFileError` naming it, and nothing is logged."""
    root = os.path.realpath(local_dir)
    items: list[tuple[str, str]] = []
    outside: list[str] = []
    dir_links: list[str] = []
    pending = [(local_dir, prefix)]
    while pending:
        directory, under = pending.pop()
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            rel = f"{under}/{e.name}" if under else e.name
            if e.is_symlink():
                st = _link_target(e.path, local_dir)
                real = os.path.realpath(e.path)
                if stat.S_ISDIR(st.st_mode):
                    dir_links.append(f"{e.path} -> {real}")
                    continue
                if stat.S_ISREG(st.st_mode):
                    items.append((rel, e.path))
                    if not (real + os.sep).startswith(root + os.sep):
                        outside.append(f"{e.path} -> {real}")
                continue  # a link to a socket or a fifo: nothing to log
            if e.is_dir(follow_symlinks=False):
                subdirs.append((e.path, rel))
            elif e.is_file(follow_symlinks=False):  # not a socket or a fifo
                items.append((rel, e.path))
        pending.extend(reversed(subdirs))  # depth first, in name order: as os.walk lists them
    if outside or dir_links:
        parts = []
        if outside:
            parts.append(f"{len(outside)} link(s) to files outside it were logged with their content: "
                         + ", ".join(outside[:5]))
        if dir_links:
            parts.append(f"{len(dir_links)} link(s) to directories were not followed: " + ", ".join(dir_links[:5]))
        warnings.warn(LinkWarning(f"logging {local_dir!r}: " + "; ".join(parts)
                                  + " (log a linked directory by its own path to include it)"), stacklevel=4)
    return items


def _link_target(path: str, local_dir: str) -> os.stat_result:
    """The status of what the link at ``path`` points to; a loop or a dangling link is an error."""
    try:
        return os.stat(path)
    except OSError as e:
        target = os.readlink(path)
        if e.errno == errno.ELOOP:
            why = f"is a symbolic link loop (it points to {target!r}, which leads back to itself)"
        elif e.errno in (errno.ENOENT, errno.ENOTDIR):
            why = f"is a symbolic link to {target!r}, which does not exist"
        else:
            why = f"is a symbolic link to {target!r}, which cannot be read ({e.strerror})"
        raise LocalFileError(
            f"cannot log {local_dir!r}: {path!r} {why}. Remove or fix the link, then log the directory again; "
            "nothing was logged"
        ) from e


def log_local_dir(handle: RunHandle, local_dir: str | os.PathLike[str], artifact_path: str | None) -> list[ArtifactEntry]:
    """Log the contents of ``local_dir`` under ``artifact_path`` (MLflow's ``log_artifacts``)."""
    local_dir = os.fspath(local_dir)
    if not os.path.exists(local_dir):
        raise LocalFileError(f"cannot log {local_dir!r}: no such directory")
    if not os.path.isdir(local_dir):
        raise LocalFileError(f"cannot log {local_dir!r} with log_artifacts: it is a file (use log_artifact)")
    prefix = clean_optional_path(artifact_path, "artifact_path")
    return handle.log_files(walk_dir(local_dir, prefix))


def log_local(handle: RunHandle, local_path: str | os.PathLike[str], artifact_path: str | None) -> list[ArtifactEntry]:
    """Log a file as ``<artifact_path>/<name>``, or a directory as the tree ``<artifact_path>/<dirname>/...``."""
    local = os.fspath(local_path)
    if os.path.isdir(local):
        name = os.path.basename(os.path.normpath(os.path.abspath(local)))
        if not name:
            raise LocalFileError(f"cannot log the root directory {local!r}; name a directory below it")
        return log_local_dir(handle, local, join_artifact_path(artifact_path, name))
    name = os.path.basename(local)
    if not name:
        raise LocalFileError(f"cannot log {local!r}: it names no file")
    if os.path.islink(local):
        _link_target(local, local)  # a loop or a dangling link: a clear error
    return [handle.log_file(join_artifact_path(artifact_path, name), local)]


# ---- rendering -------------------------------------------------------------------------


def _suffix(artifact_file: str) -> str:
    return os.path.splitext(artifact_file)[1].lower()


def dict_bytes(dictionary: Any, artifact_file: str) -> bytes:
    """The bytes MLflow's ``log_dict`` writes: JSON (indented; a value JSON has no type for,
    such as a date or a numpy integer, as its ``str``) by default, YAML with sorted keys for
    ``.yaml``/``.yml``."""
    if _suffix(artifact_file) in (".yaml", ".yml"):
        import yaml

        try:
            return str(yaml.safe_dump(dictionary, indent=2, default_flow_style=False)).encode()
        except yaml.YAMLError as e:
            raise InvalidInputError(f"log_dict cannot write {artifact_file!r} as YAML: {e}; "
                                    "convert the values to plain str, int, float, list and dict") from e
    try:
        return json.dumps(dictionary, indent=2, default=str).encode()
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"log_dict cannot write {artifact_file!r} as JSON: {e}") from e


def parse_dict(data: bytes, path: str) -> dict[Any, Any]:
    """Read a JSON or YAML mapping (by suffix; JSON first, YAML second when the suffix says
    neither). Content that parses to anything but a mapping (plain text reads as a YAML
    string, ``- 1`` as a list) is refused."""
    import yaml

    text = data.decode("utf-8")
    value: Any
    if _suffix(path) in (".yaml", ".yml"):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InvalidInputError(f"{path!r} is not valid YAML: {e}") from e
    else:
        try:
            value = json.loads(text)
        except ValueError as json_err:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise InvalidInputError(f"{path!r} is neither valid JSON nor YAML: {json_err}") from json_err
    if not isinstance(value, dict):
        kind = "nothing" if value is None else f"a {type(value).__name__}"
        raise InvalidInputError(
            f"{path!r} does not hold a JSON or YAML mapping (it parses to {kind}), so load_dict cannot "
            "return it; read it with load_text"
        )
    return value


def figure_bytes(figure: Any, artifact_file: str, save_kwargs: dict[str, Any] | None = None) -> bytes:
    """A matplotlib figure saved in the format its suffix names, or a plotly figure as HTML."""
    suffix = _suffix(artifact_file)
    if hasattr(figure, "savefig"):
        buf = io.BytesIO()
        kwargs = {"format": suffix.lstrip(".") or "png", **(save_kwargs or {})}
        try:
            figure.savefig(buf, **kwargs)
        except ValueError as e:
            raise InvalidInputError(f"cannot save the figure as {artifact_file!r}: {e}") from e
        return buf.getvalue()
    if hasattr(figure, "to_html") and suffix in (".html", ".htm"):
        return str(figure.to_html(**(save_kwargs or {}))).encode()
    if hasattr(figure, "to_image"):
        return bytes(figure.to_image(format=suffix.lstrip(".") or "png", **(save_kwargs or {})))
    raise InvalidInputError(
        f"log_figure takes a matplotlib or plotly figure, got {type(figure).__name__}; "
        "install matplotlib (pip install matplotlib) and pass a Figure"
    )


#: the longer side of the preview written beside each image of a series (MLflow's UI shows it)
IMAGE_PREVIEW_SIZE = 256
_IMAGE_KEY = re.compile(r"^[a-zA-Z0-9_\-./ ]+$")


def _pil_image(image: Any) -> Any:
    """A numpy array (H x W, H x W x 1/3/4; uint8, or floats in [0, 1]) or a PIL image, as a PIL image."""
    try:
        from PIL import Image
    except ImportError as e:
        raise InvalidInputError("log_image needs Pillow: pip install pillow") from e
    return image if isinstance(image, Image.Image) else Image.fromarray(_to_uint8(image))


def _encode(image: Any, fmt: str) -> bytes:
    if fmt == "JPEG" and image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def image_bytes(image: Any, artifact_file: str) -> bytes:
    """A numpy array (H x W, H x W x 1/3/4; uint8, or floats in [0, 1]) or a PIL image, encoded
    in the format the suffix names (PNG by default)."""
    image = _pil_image(image)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP"}.get(_suffix(artifact_file), "PNG")
    return _encode(image, fmt)


def image_series_files(image: Any, key: str, step: int, timestamp: int) -> list[tuple[str, bytes]]:
    """The two files MLflow 3's ``log_image(image, key=, step=, timestamp=)`` writes for one image
    of a series: ``images/<key>+step+<step>+timestamp+<timestamp>+<uuid>.png``, the image, and
    the same name ending ``+compressed.webp``, a preview scaled to 256 pixels on its longer side.
    A ``/`` in the key becomes ``~``, so each series is one directory level."""
    if not isinstance(key, str) or not _IMAGE_KEY.match(key):
        raise InvalidInputError(
            f"log_image key {key!r} is invalid: a key may only contain letters, digits, underscores (_), "
            "dashes (-), periods (.), spaces ( ) and slashes (/)"
        )
    image = _pil_image(image)
    width, height = image.size
    if width > height:
        size = (IMAGE_PREVIEW_SIZE, int(height * IMAGE_PREVIEW_SIZE / width))
    else:
        size = (int(width * IMAGE_PREVIEW_SIZE / height), IMAGE_PREVIEW_SIZE)
    name = f"images/{key.replace('/', '~')}+step+{step}+timestamp+{timestamp}+{uuid.uuid4()}"
    return [(f"{name}.png", _encode(image, "PNG")), (f"{name}+compressed.webp", _encode(image.resize(size), "WEBP"))]


def _to_uint8(image: Any) -> Any:
    import numpy as np

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidInputError(
            f"log_image takes an array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}"
        )
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InvalidInputError("log_image: integer pixel values must be within [0, 255]")
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
            raise InvalidInputError("log_image: float pixel values must be finite and within [0, 1]")
        return (arr * 255).round().astype(np.uint8)
    raise InvalidInputError(f"log_image cannot use an array of dtype {arr.dtype}")


# ---- listing and reading -------------------------------------------------------------------


def list_entries(view: RunView, path: str | None = None) -> list[FileInfo]:
    """The files and directories directly under ``path`` in a run (MLflow's ``list_artifacts``)."""
    base = clean_optional_path(path)
    prefix = base + "/" if base else ""
    files: dict[str, FileInfo] = {}
    dirs: set[str] = set()
    for p, e in view.artifacts.items():
        if not p.startswith(prefix):
            continue
        head, sep, _ = p[len(prefix):].partition("/")
        if sep:
            dirs.add(prefix + head)
        else:
            files[p] = FileInfo(p, False, e.size, e.digest)
    # a name that is both (a run logged before such paths were refused) is listed as both
    out = [FileInfo(d, True, None, None) for d in dirs] + list(files.values())
    return sorted(out, key=lambda f: (f.path, f.is_dir))


def _entry(view: RunView, path: str) -> ArtifactEntry:
    clean = clean_artifact_path(path)
    if clean in view.artifacts:
        return view.artifacts[clean]
    damage = view.artifact_damage(clean)
    if damage is not None:
        raise CorruptRecordError(f"artifact {clean!r} of run {view.run_id} cannot be read: {damage.detail}")
    raise ObjectNotFoundError(f"run {view.run_id} has no artifact file {path!r}")


def read_bytes(store: RunStore, view: RunView, path: str) -> bytes:
    """An artifact's whole content, verified."""
    return store.artifact_bytes(view.run_id, _entry(view, path))


def _selected(view: RunView, path: str) -> list[ArtifactEntry]:
    if path in view.artifacts:
        return [view.artifacts[path]]
    prefix = path + "/" if path else ""
    chosen = [e for p, e in sorted(view.artifacts.items()) if p.startswith(prefix)]
    if not chosen:
        where = f"at {path!r}" if path else "at all"
        raise ObjectNotFoundError(f"run {view.run_id} has no artifacts {where}")
    paths = {e.path for e in chosen}
    for e in chosen:
        parts = e.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise InvalidInputError(
                    f"cannot download run {view.run_id}: {'/'.join(parts[:i])!r} is both a file and a directory "
                    f"(it holds {e.path!r}); download the two paths separately"
                )
    return chosen


def download(store: RunStore, view: RunView, artifact_path: str | None, dst_path: str | os.PathLike[str] | None) -> str:
    """Download a file or a directory of a run into ``dst_path`` (a new temp dir if ``None``)
    under its last name, as MLflow does (``plots/roc.png`` lands at ``<dst>/roc.png``, the
    directory ``out/sub`` at ``<dst>/sub/...``, the whole run at ``<dst>/...``); return the
    local path. Every file is verified; none is written outside ``dst_path``."""
    path = clean_optional_path(artifact_path)
    chosen = _selected(view, path)
    private = dst_path is None
    if dst_path is None:
        dst = tempfile.mkdtemp(prefix="casstore-download-")
    else:
        dst = os.path.abspath(os.fspath(dst_path))
        if os.path.exists(dst) and not os.path.isdir(dst):
            raise LocalFileError(f"download destination {dst!r} exists and is not a directory")
    parent = path.rpartition("/")[0]
    skip = len(parent) + 1 if parent else 0
    targets = [(e, safe_destination(dst, e.path[skip:])) for e in chosen]  # all checked before any write

    def fetch(entry: ArtifactEntry, target: str) -> None:  # its directories are made (and synced) by the write
        store.artifact_to_file(view.run_id, entry, target, durable=False if private else None)

    workers = writer_count(len(targets), store.io_workers, durable=False if private else None)
    write_files(targets, fetch, lambda e: e.path, workers=workers)
    return os.path.join(dst, path.rpartition("/")[2]) if path else dst


def pandas_for(what: str) -> Any:
    """pandas, or a clear error naming the call that needs it."""
    try:
        import pandas
    except ImportError as e:
        raise InvalidInputError(f"{what} needs pandas: pip install 'casstore[pandas]'") from e
    return pandas


def table_bytes(data: Any, artifact_file: str) -> bytes:
    """A table as ``log_table`` stores it: JSON in pandas' ``split`` form, or Parquet."""
    pd = pandas_for("log_table")
    if not artifact_file.endswith((".json", ".parquet")):
        raise InvalidInputError(f"log_table: artifact file {artifact_file!r} must end in .json or .parquet")
    if isinstance(data, dict):
        try:
            data = pd.DataFrame(data)
        except ValueError:  # scalars only: one row
            data = pd.DataFrame([data])
    if not isinstance(data, pd.DataFrame):
        raise InvalidInputError(f"log_table takes a pandas DataFrame or a dict of columns, got {type(data).__name__}")
    if artifact_file.endswith(".parquet"):
        buf = io.BytesIO()
        data.to_parquet(buf, index=False)
        return buf.getvalue()
    try:
        return str(data.to_json(orient="split", index=False, date_format="iso")).encode("utf-8")
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidInputError(f"log_table: the table cannot be written as JSON: {e}") from e


def read_table(data: bytes, artifact_file: str) -> Any:
    """A table ``log_table`` stored, as a DataFrame."""
    pd = pandas_for("load_table")
    if artifact_file.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    return pd.read_json(io.StringIO(data.decode("utf-8")), orient="split")
