"""``casstore ui``: serve the read-only web UI over a store."""

from __future__ import annotations

import ipaddress

import click

from casstore._net import bind
from casstore.cli._common import common_options, open_runs

__all__ = ["COMMANDS", "is_loopback", "exposure_warning"]

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, store: str) -> str:
    where = "every network interface of this machine" if host in ("0.0.0.0", "::", "[::]") else f"the address {host}"
    return (
        f"WARNING: serving on {host}:{port} ({where}). Anyone who can reach it can read every run, "
        f"parameter, metric, tag, model and artifact in {store}, and download its files: the UI has no "
        "login and no encryption. Bind 127.0.0.1 (the default) and use an SSH tunnel, or put it behind a "
        "proxy that authenticates and terminates TLS."
    )


@click.command("ui", epilog="""\b
Examples:
  casstore ui                                   # http://127.0.0.1:5000 over ./casstore
  casstore ui --store s3://team-bucket/ml --port 8080
  ssh -L 5000:127.0.0.1:5000 gpu-box casstore ui   # see a remote store from your laptop
""")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes the whole store to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True, help="Port to listen on (0: any free port, said at start).")
@click.option("--root-path", default="", metavar="PATH", help="URL prefix when served behind a proxy under a path.")
@common_options
def ui_cmd(host: str, port: int, root_path: str, store: str | None) -> None:
    """Serve a read-only web UI over the store: runs, compare, artifacts, models, audit.

    Needs the ui extra: pip install "casstore[ui]". The UI never writes to the store.
    """
    from casstore.ui import INSTALL_HINT

    try:
        import uvicorn

        from casstore.ui import create_app
    except ImportError as e:
        raise click.ClickException(f"{INSTALL_HINT} ({e})") from e
    runs = open_runs(store)
    sock = bind(host.strip("[]"), port)  # a port in use is said here, before anything starts
    port = sock.getsockname()[1]  # --port 0: the port the system chose
    loopback = is_loopback(host)
    if not loopback:
        click.secho(exposure_warning(host, port, runs.url), fg="red", bold=True, err=True)
    app = create_app(runs, allowed_hosts=LOOPBACK_NAMES if loopback else None, warm=True)
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    click.echo(f"casstore ui: serving {runs.url} read-only at http://{shown}:{port}{root_path}/ (Ctrl-C stops)", err=True)
    config = uvicorn.Config(app, root_path=root_path, log_level="warning", proxy_headers=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


COMMANDS = [ui_cmd]
