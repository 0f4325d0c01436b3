"""What every command shares: the ``--store``/``--debug`` options, opening the store,
tables, JSON, sizes and times, and progress bars that show only on a terminal."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import click

from casstore.exceptions import InvalidInputError, LocalFileError, ObjectNotFoundError

__all__ = [
    "common_options",
    "open_runs",
    "resolve_run_id",
    "complete_run_id",
    "complete_experiment",
    "complete_model_name",
    "emit_json",
    "print_table",
    "columns",
    "echo_files",
    "human_size",
    "fmt_time",
    "Progress",
    "is_interactive",
    "confirm",
    "DEBUG_KEY",
    "STORE_KEY",
    "INTERRUPTED",
]

F = TypeVar("F", bound=Callable[..., Any])
DEBUG_KEY = "casstore.debug"
STORE_KEY = "casstore.store"
STORE_ENV = "CASSTORE_TRACKING_URI"
#: the exit status of a command stopped by Ctrl-C (SIGINT): 128 + 2, as a shell reports it
INTERRUPTED = 130


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[DEBUG_KEY] = True
    return value


def common_options(fn: F) -> F:
    """Add ``--store URI`` and ``--debug`` to a command."""
    fn = click.option(
        "--store", "store", metavar="URI", default=None,
        help=f"The store: a local path or any fsspec URL (default: ${STORE_ENV}, else ./casstore).",
    )(fn)
    fn = click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
        help="Show the full traceback of an error.",
    )(fn)
    return fn


def store_uri(store: str | None) -> str:
    """The store to use: the command's ``--store``, the group's, the environment, ``./casstore``."""
    from casstore.tracking.uri import check_servable, get_tracking_uri

    ctx = click.get_current_context(silent=True)
    given = store or (ctx.meta.get(STORE_KEY) if ctx else None)
    if given:
        check_servable(given, "--store", "Pass --store with one")
    return given or get_tracking_uri()


def open_runs(store: str | None, *, create: bool = False) -> Any:
    """The run store at ``store`` (or the default). A store that does not exist yet is an
    error, except for commands that write (``create``)."""
    from casstore.objects import open_store
    from casstore.runs import RunStore

    uri = store_uri(store)
    if "://" not in uri or uri.startswith("file://"):
        _check_local_store(uri.removeprefix("file://"), create)
    return RunStore(open_store(uri, create=create))


def _check_local_store(path: str, create: bool) -> None:
    """A clear error for a local store path that cannot be a store: a regular file, a path
    through a file, or (for a command that only reads) a directory that does not exist."""
    if os.path.isdir(path):
        return
    if os.path.exists(path):
        raise LocalFileError(
            f"--store {path!r} is a file, not a store directory; pass the directory of a store "
            f"(or a new directory to create one) with --store or ${STORE_ENV}"
        )
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise LocalFileError(f"--store {path!r} lies under {parent!r}, which is a file, not a directory")
    if not create:
        raise ObjectNotFoundError(
            f"no casstore store at {path!r} (the directory does not exist); pass --store URI or set ${STORE_ENV}"
        )


def _completions(ctx: click.Context, incomplete: str, items: Callable[[Any], Iterable[tuple[str, str]]]) -> list[Any]:
    """Shell completion from the store the command line names (the command's --store, or
    the group's, or the default): the ``(value, help)`` pairs of ``items(runs)`` whose value
    begins with what is typed. Nothing on any error: completion never prints one."""
    from click.shell_completion import CompletionItem

    try:
        runs = open_runs(ctx.params.get("store") or ctx.meta.get(STORE_KEY))
        found = [CompletionItem(value, help=help) for value, help in items(runs) if value.startswith(incomplete)]
    except Exception:  # noqa: BLE001 - a store that cannot be read completes nothing
        return []
    return found[:200]


def complete_run_id(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a RUN: the store's run ids, newest first, each with its name
    (which zsh and fish show)."""
    return _completions(ctx, incomplete.lower(),
                        lambda runs: ((v.run_id, v.run_name) for v in runs.search_runs(None, "", max_results=None)))


def complete_experiment(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of an experiment's NAME: the store's live experiments."""
    return _completions(ctx, incomplete, lambda runs: (
        (e.name, e.experiment_id) for e in runs.list_experiments(on_damaged=lambda _m: None)
        if e.lifecycle_stage == "active"))


def complete_model_name(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a registered model's NAME."""
    from casstore.registry import Registry

    return _completions(ctx, incomplete, lambda runs: (
        (m.name, f"latest {m.latest_versions[0].version}" if m.latest_versions else "")
        for m in Registry(runs.backend, runs.objects.layout).list_models(on_damaged=lambda _m: None)))


def resolve_run_id(runs: Any, text: str) -> str:
    """A full run id from a full id or a unique prefix of at least 6 characters."""
    from casstore.runs.layout import is_run_id

    t = text.strip().lower()
    if is_run_id(t):
        return t
    if len(t) < 6 or any(c not in "0123456789abcdef" for c in t):
        raise InvalidInputError(
            f"{text!r} is not a run id: give the 32-character id, or a unique prefix of at least 6 characters "
            "(see `casstore runs`)"
        )
    matches = sorted({k.split("/")[1] for k in runs.backend.list(f"runs/{t[:2]}") if k.split("/")[1].startswith(t)})
    if not matches:
        raise ObjectNotFoundError(f"no run whose id starts with {t!r} in store {runs.url}")
    if len(matches) > 1:
        raise InvalidInputError(f"run id prefix {t!r} is ambiguous: it matches {', '.join(m[:12] for m in matches[:5])}...")
    return str(matches[0])


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def is_interactive(stream: Any = None) -> bool:
    """Whether to draw progress bars and colours: a terminal, and not CI."""
    stream = stream or sys.stderr
    if os.environ.get("CI"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def confirm(question: str, *, exact: bool, refusal: str) -> None:
    """Ask ``question`` before something that cannot be undone; raise ``Abort`` on no.

    Without a terminal to ask on, an ``exact`` target (the full id a script holds) is taken
    as meant, and any other (an id prefix) is refused with ``refusal``: an
    :class:`InvalidInputError` that says what to give instead."""
    try:
        terminal = sys.stdin.isatty()
    except (AttributeError, ValueError):
        terminal = False
    if not terminal:
        if exact:
            return
        raise InvalidInputError(refusal)
    if not click.confirm(question, default=False, err=True):
        click.echo("nothing was changed", err=True)
        raise click.exceptions.Exit(1)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
                right: Sequence[str] = ()) -> None:
    """A table: drawn with rich on a terminal, plain aligned columns (never truncated) in a pipe."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if is_interactive(sys.stdout):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
        for i, h in enumerate(headers):
            # a column of single words (ids, digests) is never broken; free text folds to fit
            whole = all(" " not in row[i] for row in cells)
            table.add_column(h, justify="right" if h in right else "left", overflow="fold", no_wrap=whole)
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    if title:
        click.echo(title)
    for line in columns([list(headers), *cells], right=[i for i, h in enumerate(headers) if h in right]):
        click.echo(line)


def columns(rows: Sequence[Sequence[Any]], *, right: Sequence[int] = (), indent: str = "") -> list[str]:
    """``rows`` as lines of aligned columns, two spaces apart, never truncated: the columns
    numbered in ``right`` (sizes, counts) aligned to the right, the others to the left."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if not cells:
        return []
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(max(map(len, cells)))]
    return [indent + "  ".join((c.rjust if i in right else c.ljust)(widths[i]) for i, c in enumerate(row)).rstrip()
            for row in cells]


def echo_files(files: Iterable[tuple[str, int, str]], indent: str = "  ") -> None:
    """Files as aligned columns: name, size (to the right), BLAKE3 digest."""
    for line in columns([(name, human_size(size), digest) for name, size, digest in files], right=[1], indent=indent):
        click.echo(line)


def human_size(n: float) -> str:
    """``1.5 MiB``-style size."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def fmt_time(ms: int | None) -> str:
    """An epoch-milliseconds time as local ISO date and time (``-`` if unknown)."""
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


class Progress:
    """Progress bars on stderr when it is a terminal (and not CI); silent otherwise.

    ``callback(stage, advance, total)`` fits the maintenance functions: a stage starts
    with ``advance=0`` and its total; :meth:`task` counts anything (bytes, files).
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = is_interactive() if enabled is None else enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def callback(self, stage: str, advance: int = 0, total: int | None = None) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total)
        if advance:
            self._progress.advance(task, advance)
        elif total is not None:
            self._progress.update(task, total=total)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
        """One bar for the duration of the block; yields ``advance(n)``, or None when no bar
        is drawn (then the work needs no callback: a file is stored the fastest way)."""
        if self._progress is None:
            yield None
            return
        task = self._progress.add_task(description, total=total)
        try:
            yield functools.partial(self._progress.advance, task)
        finally:
            self._progress.remove_task(task)
