"""The reproducibility context every run records as tags when it starts.

MLflow's tag names where they exist (``mlflow.source.name``, ``mlflow.source.type``,
``mlflow.source.git.commit``, ``mlflow.user``), casstore's otherwise
(``casstore.git.dirty``, ``casstore.python``, ``casstore.platform``,
``casstore.host``, ``casstore.version``, ``casstore.lib.<name>``). Library versions
come from installed package metadata, so no library is imported to learn its
version. Git and library facts are computed once per process.
"""

from __future__ import annotations

import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata

from casstore.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

__all__ = ["context_tags", "KEY_LIBRARIES"]

#: tag suffix -> distribution name
KEY_LIBRARIES = {
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "pandas": "pandas",
    "torch": "torch",
    "tensorflow": "tensorflow",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}


def _source() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) if main is not None else None
    if isinstance(path, str) and path:
        return path if path.startswith("<") else os.path.abspath(path)
    return str(sys.argv[0]) if sys.argv and sys.argv[0] else "<interactive>"


@functools.lru_cache(maxsize=8)
def _git(directory: str) -> tuple[str, str] | None:
    """``(commit, dirty)`` of the git work tree holding ``directory``, or ``None``."""
    if not os.path.isdir(directory):
        return None
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        head = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, env=env
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = "unknown" if status.returncode != 0 else ("true" if status.stdout.strip() else "false")
    return head.stdout.strip(), dirty


@functools.lru_cache(maxsize=1)
def _static_tags() -> dict[str, str]:
    from casstore import __version__

    tags = {
        "casstore.python": platform.python_version(),
        "casstore.platform": platform.platform(),
        "casstore.host": socket.gethostname(),
        "casstore.version": __version__,
    }
    for name, dist in KEY_LIBRARIES.items():
        try:
            tags[f"casstore.lib.{name}"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def context_tags() -> dict[str, str]:
    """Tags describing where and with what a run is being made."""
    source = _source()
    tags = {MLFLOW_SOURCE_NAME: source, MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: _user()}
    tags.update(_static_tags())
    directory = os.path.dirname(source) if os.path.isabs(source) else os.getcwd()
    git = _git(directory)
    if git is not None:
        tags[MLFLOW_GIT_COMMIT], tags["casstore.git.dirty"] = git
    return tags
