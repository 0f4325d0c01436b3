"""Listening sockets for the HTTP servers (``casstore ui``, ``casstore models serve``)."""

from __future__ import annotations

import socket

__all__ = ["bind"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that worker processes can share; a port in
    use (or an address that is not this machine's) is an :class:`InvalidInputError` that
    says so, before anything else starts."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    # the protocol named, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it a keep-alive client waits out delayed ACKs (40 ms a request)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        from casstore.exceptions import InvalidInputError

        raise InvalidInputError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
