"""The web UI (``casstore ui``): read-only pages over a store, served by uvicorn.

Needs the ``ui`` extra: ``pip install "casstore[ui]"`` (starlette, uvicorn, jinja2).
``create_app(runs)`` builds the ASGI app; ``casstore/ui/data.py`` is the one place it
reads the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from casstore.runs import RunStore

__all__ = ["create_app", "INSTALL_HINT"]

INSTALL_HINT = 'the web UI needs starlette, uvicorn and jinja2: pip install "casstore[ui]"'


def create_app(
    runs: RunStore, *, allowed_hosts: list[str] | None = None, warm: bool = False
) -> Starlette:
    """The UI's ASGI app over ``runs`` (see :func:`casstore.ui.app.create_app`)."""
    try:
        from casstore.ui.app import create_app as _create
    except ImportError as e:
        from casstore.exceptions import InvalidInputError

        raise InvalidInputError(f"{INSTALL_HINT} ({e})") from e
    return _create(runs, allowed_hosts=allowed_hosts, warm=warm)
