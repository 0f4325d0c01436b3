"""Serving models over HTTP: MLflow's scoring protocol and the Open Inference Protocol,
from a model pinned by its digest.

- ``payload.py``: the one strict parser of ``/invocations`` bodies, and the JSON form
  of predictions;
- ``v2.py``: the Open Inference Protocol's types (pydantic) and tensor conversions;
- ``model.py``: loading the served model (verified before unpickling), the slot that
  holds it, and the alias follower that swaps a new version in;
- ``app.py``: the Starlette application;
- ``server.py``: binding, loading once, uvicorn in one or more worker processes.

Needs the ``serve`` extra: ``pip install 'casstore[serve]'`` (starlette, uvicorn,
pydantic, pandas).
"""

from __future__ import annotations

__all__ = ["require_serving"]

INSTALL_HINT = "pip install 'casstore[serve]'"


def require_serving() -> None:
    """Raise a clear error when the serving dependencies are not installed."""
    import importlib.util

    from casstore.exceptions import InvalidInputError

    missing = [m for m in ("starlette", "uvicorn", "pydantic", "pandas") if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidInputError(f"serving models needs {', '.join(missing)}: {INSTALL_HINT}")
