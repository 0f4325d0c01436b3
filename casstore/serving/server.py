"""Running the scoring server: bind, load once, then serve with uvicorn in N processes.

The order at start: bind the port (a port in use fails at once), fetch and verify the
model and load it (a tampered byte fails here, before anything is unpickled), then
serve. With ``workers > 1`` the loaded process forks its workers, which share the
listening socket and start with the model already in memory (shared copy-on-write
until a worker writes to it); a worker that dies is replaced from the same model. Each
worker follows its alias on its own (``--follow-alias``).

SIGTERM (or SIGINT) stops accepting and lets the requests in flight finish, up to the
request timeout and a few seconds more; then the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from casstore._net import bind
from casstore.serving.app import DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, create_app
from casstore.serving.model import AliasFollower, ModelSlot, StoreOpener, check_followable, is_local_dir, load_served

__all__ = ["ServeOptions", "serve", "bind"]

log = logging.getLogger("casstore.serving")
#: a worker that keeps dying is not restarted more often than this many times a minute
_MAX_RESTARTS_PER_MINUTE = 5
#: seconds between tries to start a worker when the system refuses a fork
_FORK_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 5001
    workers: int = 1
    follow_alias: float | None = None
    max_body: int = DEFAULT_MAX_BODY
    timeout: float = DEFAULT_TIMEOUT
    log_level: str = "info"


def _setup_logging(level: str) -> None:
    logger = logging.getLogger("casstore.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s casstore[%(process)d] %(levelname)s %(message)s"))
        logger.addHandler(handler)
    # the start, the address and every swap are always said; the level quiets the rest
    logger.setLevel(min(logging.INFO, logging.getLevelName(level.upper())))
    logger.propagate = False


def serve(uri: str, open_store: StoreOpener | None, options: ServeOptions) -> None:
    """Serve the model ``uri`` names until SIGTERM or SIGINT."""
    import uvicorn  # noqa: F401 - fail before loading when the serve extra is missing

    _setup_logging(options.log_level)
    if options.follow_alias is not None:
        check_followable(uri)
        if open_store is None or options.follow_alias <= 0:
            from casstore.exceptions import InvalidInputError

            raise InvalidInputError(f"--follow-alias takes a positive number of seconds, got {options.follow_alias}")
    sock = bind(options.host, options.port)
    started = time.monotonic()
    model = load_served(uri, open_store)
    log.info(
        "loaded %s: digest %s%s in %.1f s (%s)",
        uri, model.digest, f", {model.registered_name} version {model.version}" if model.version is not None else "",
        time.monotonic() - started, "a local directory, read and hashed" if is_local_dir(uri) else "every file verified",
    )
    host, port = sock.getsockname()[:2]
    log.info("serving on http://%s:%d with %d worker process%s", host, port, options.workers, "es" if options.workers > 1 else "")
    slot = ModelSlot(model)
    if options.workers <= 1:
        _run_worker(sock, slot, open_store, options)
        return
    _supervise(sock, slot, open_store, options)


def _run_worker(sock: socket.socket, slot: ModelSlot, open_store: StoreOpener | None, options: ServeOptions) -> None:
    import uvicorn

    follower = None
    if options.follow_alias is not None and open_store is not None:
        follower = AliasFollower(slot, open_store, options.follow_alias)
        follower.start()
    config = uvicorn.Config(
        create_app(slot, max_body=options.max_body, timeout=options.timeout),
        lifespan="off",
        log_level=options.log_level,
        timeout_graceful_shutdown=int(options.timeout) + 5,
        server_header=False,
    )
    # until uvicorn takes them over, SIGTERM and SIGINT end the worker (it has no requests
    # yet); once it has stopped gracefully, uvicorn re-raises the signal here: exit status 0
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _exit_ok)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if follower is not None:
            follower.stop()


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _exit_ok(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _supervise(sock: socket.socket, slot: ModelSlot, open_store: StoreOpener | None, options: ServeOptions) -> None:
    """Fork ``options.workers`` workers; replace one that dies; on SIGTERM/SIGINT, pass
    SIGTERM on and wait for every worker to finish its requests.

    A dead worker is found by ``wait``, which reports every child that has exited until it
    is reaped, so no exit can be missed between two waits. A fork the system refuses (no
    memory, a process limit) is logged and tried again every :data:`_FORK_RETRY_SECONDS`
    while the other workers serve."""
    children: set[int] = set()
    stopping = False
    restarts: list[float] = []

    def spawn() -> bool:
        """Fork one worker; False if none was started (stopping, or the fork was refused)."""
        # a signal that arrives while forking waits: the child must not run the
        # supervisor's handler, and the supervisor must know the child to pass it on
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            if stopping:  # a stop came after the decision to start a worker: no new one
                return False
            try:
                pid = os.fork()
            except OSError as e:
                log.error("cannot start a worker process (%s); trying again in %g s", e, _FORK_RETRY_SECONDS)
                return False
            if pid == 0:  # the worker
                code: int | str | None = 1
                try:
                    for sig in _STOP_SIGNALS:
                        signal.signal(sig, _exit_ok)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                    _run_worker(sock, slot, open_store, options)
                    code = 0
                except SystemExit as e:
                    code = e.code
                except BaseException:  # noqa: BLE001 - a worker reports and exits, never returns to the supervisor's code
                    log.exception("worker failed")
                finally:
                    os._exit(code if isinstance(code, int) else 1)
            children.add(pid)
            return True
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while children or not stopping:
        while not stopping and len(children) < options.workers and spawn():
            pass
        try:
            if not stopping and len(children) < options.workers:
                time.sleep(_FORK_RETRY_SECONDS)  # a fork was refused: the others serve meanwhile
                pid, status = os.waitpid(-1, os.WNOHANG) if children else (0, 0)
            else:
                pid, status = os.wait()
        except ChildProcessError:  # no child is left (or another part of the process reaped them)
            children.clear()
            continue
        if pid == 0:
            continue
        children.discard(pid)
        if stopping:
            continue
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > _MAX_RESTARTS_PER_MINUTE:
            log.error("workers keep exiting (worker %d %s); stopping the server", pid, _how_it_ended(status))
            stop(signal.SIGTERM, None)
            continue
        log.warning("worker %d %s; starting another", pid, _how_it_ended(status))
    sock.close()


def _how_it_ended(status: int) -> str:
    """A wait status in words: "exited with status 1", "was killed by SIGKILL"."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"
