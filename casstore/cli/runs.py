"""Run commands: ``runs``, ``show``, ``ls``, ``cat``, ``get``, ``log`` and ``delete-run``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from casstore.cli._common import (
    INTERRUPTED,
    Progress,
    columns,
    common_options,
    complete_experiment,
    complete_run_id,
    echo_files,
    emit_json,
    fmt_time,
    human_size,
    is_interactive,
    print_table,
    resolve_run_id,
)
from casstore.exceptions import CasstoreError, CorruptRecordError, IntegrityError, InvalidInputError, LocalFileError, ObjectNotFoundError
from casstore.utils.mlflow_tags import MLFLOW_SOURCE_NAME

__all__ = ["COMMANDS", "run_dict", "short"]


def short(digest: str | None, n: int = 12) -> str:
    return digest[:n] if digest else "-"


def _kv(d: dict[str, Any], limit: int = 4) -> str:
    items = [f"{k}={_num(v)}" for k, v in sorted(d.items())]
    if len(items) > limit:
        items = items[:limit] + [f"(+{len(items) - limit})"]
    return " ".join(items)


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def run_dict(view: Any, experiment_name: str | None = None) -> dict[str, Any]:
    """The JSON form of a run (``casstore runs --json``, ``casstore show --json``)."""
    return {
        "run_id": view.run_id,
        "run_name": view.run_name,
        "experiment_id": view.experiment_id,
        "experiment_name": experiment_name,
        "status": view.status,
        "start_time": view.start_time,
        "end_time": view.end_time,
        "sealed": view.sealed,
        "deleted": view.deleted,
        "digest": view.digest,
        "params": dict(view.params),
        "metrics": dict(view.metrics),
        "tags": dict(view.tags),
        "artifacts": view.artifact_count,
        "artifact_bytes": view.artifact_bytes,
        "models": {name: ref.digest for name, ref in view.models.items()},
    }


def _experiment_names(runs: Any) -> dict[str, str]:
    return {e.experiment_id: e.name for e in runs.list_experiments()}


# ---- runs ----------------------------------------------------------------------------------


@click.command("runs", epilog="""\b
Examples:
  casstore runs
  casstore runs --experiment fraud --filter "metrics.auc > 0.9 and params.model = 'rf'"
  casstore runs --json | jq '.[].digest'
""")
@click.option("--experiment", "-e", "experiments", multiple=True, metavar="NAME", shell_complete=complete_experiment,
              help="Only runs of this experiment (repeatable).")
@click.option("--filter", "filter_string", default="", metavar="EXPR",
              help="An MLflow search filter, e.g. \"metrics.loss < 0.1 and tags.stage = 'prod'\".")
@click.option("--deleted", is_flag=True, help="Show deleted runs instead of active ones.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Show at most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of runs) instead of a table.")
@common_options
def runs_cmd(experiments: tuple[str, ...], filter_string: str, deleted: bool, limit: int | None, as_json: bool,
             store: str | None) -> None:
    """List runs as a table: id, name, status, start, params, metrics, digest.

    Newest first. The digest is the run digest (BLAKE3 of the sealed manifest);
    open runs have none yet.
    """
    from casstore.cli._common import open_runs

    runs = open_runs(store)
    names = _experiment_names(runs)
    exp_ids = None
    if experiments:
        by_name = {v: k for k, v in names.items()}
        exp_ids = []
        for e in experiments:
            if e in by_name:
                exp_ids.append(by_name[e])
            elif e in names:
                exp_ids.append(e)
            else:
                raise ObjectNotFoundError(f"no experiment named {e!r} in store {runs.url} (see `casstore experiments`)")
    with Progress() as progress:
        progress.callback("reading runs")
        views = runs.search_runs(exp_ids, filter_string or "", max_results=limit, deleted=deleted)
    if as_json:
        emit_json([run_dict(v, names.get(v.experiment_id)) for v in views])
        return
    if not views:
        click.echo("no runs" + (" match" if filter_string or experiments else " in this store"), err=True)
        return
    n = 12 if is_interactive(sys.stdout) else 64  # whole digests in a pipe
    rows = [
        (v.run_id, v.run_name, v.status, fmt_time(v.start_time), _kv(v.params), _kv(v.metrics), short(v.digest, n))
        for v in views
    ]
    print_table(["id", "name", "status", "start", "params", "metrics", "digest"], rows)


# ---- experiments ---------------------------------------------------------------------------


@click.command("experiments", epilog="""\b
Examples:
  casstore experiments
  casstore experiments --json | jq -r '.[].name'
  casstore runs --experiment fraud             # the runs of one of them
""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of experiments) instead of a table.")
@common_options
def experiments_cmd(as_json: bool, store: str | None) -> None:
    """List experiments: id, name, live runs, created; deleted ones are marked.

    Oldest first; `casstore runs --experiment NAME` lists an experiment's runs.
    """
    from casstore.cli._common import open_runs

    runs = open_runs(store)
    experiments = runs.list_experiments()
    counts: dict[str, int] = {}
    for v in runs.search_runs(None, "", deleted=False):
        counts[v.experiment_id] = counts.get(v.experiment_id, 0) + 1
    if as_json:
        emit_json([{"experiment_id": e.experiment_id, "name": e.name, "lifecycle_stage": e.lifecycle_stage,
                    "runs": counts.get(e.experiment_id, 0), "creation_time": e.creation_time,
                    "last_update_time": e.last_update_time, "tags": dict(e.tags)} for e in experiments])
        return
    print_table(["id", "name", "runs", "created", "state"],
                [(e.experiment_id, e.name, counts.get(e.experiment_id, 0), fmt_time(e.creation_time) if e.creation_time
                  else "-", e.lifecycle_stage) for e in experiments], right=("runs",))


# ---- show ----------------------------------------------------------------------------------


@click.command("show", epilog="""\b
Examples:
  casstore show 3f2a9c
  casstore show 3f2a9c0e5d4b4c1e8f7a6b5c4d3e2f1a --json
""")
@click.argument("run", shell_complete=complete_run_id)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@common_options
def show_cmd(run: str, as_json: bool, store: str | None) -> None:
    """Show one run: its header, digest, params, metrics, tags, artifacts and models.

    RUN is a run id or a unique prefix of one (at least 6 characters).
    """
    from casstore.cli._common import open_runs

    runs = open_runs(store)
    view = runs.get_run(resolve_run_id(runs, run))
    exp = _experiment_names(runs).get(view.experiment_id)
    if as_json:
        d = run_dict(view, exp)
        d["artifacts"] = {p: {"digest": a.digest, "size": a.size} for p, a in sorted(view.artifacts.items())}
        emit_json(d)
        return
    lines = [
        ("run", view.run_id),
        ("name", view.run_name or "-"),
        ("experiment", f"{exp} ({view.experiment_id})" if exp else view.experiment_id),
        ("status", view.status + (" (deleted)" if view.deleted else "")),
        ("start", fmt_time(view.start_time)),
        ("end", fmt_time(view.end_time)),
        ("digest", view.digest or "- (open: sealed when the run ends)"),
    ]
    for k, v in lines:
        click.echo(f"{k:<11} {v}")
    _section("params", view.params)
    _section("metrics", {k: _num(v) for k, v in view.metrics.items()})
    _section("tags", view.tags)
    if view.artifacts:
        total = sum(a.size for a in view.artifacts.values())
        click.echo(f"\nartifacts ({len(view.artifacts)}, {human_size(total)})")
        echo_files((p, a.size, a.digest) for p, a in sorted(view.artifacts.items()))
    if view.models:
        click.echo(f"\nmodels ({len(view.models)})")
        for line in columns([(name, ref.digest) for name, ref in sorted(view.models.items())], indent="  "):
            click.echo(line)


def _section(title: str, d: dict[str, Any]) -> None:
    if not d:
        return
    click.echo(f"\n{title}")
    width = max(len(k) for k in d)
    for k, v in sorted(d.items()):
        click.echo(f"  {k:<{width}}  {v}")


# ---- ls, cat, get --------------------------------------------------------------------------


@click.command("ls", epilog="""\b
Examples:
  casstore ls 3f2a9c
  casstore ls 3f2a9c model -l
  casstore ls 3f2a9c -R --json
""")
@click.argument("run", shell_complete=complete_run_id)
@click.argument("path", required=False, default="")
@click.option("-l", "long", is_flag=True, help="Show sizes and BLAKE3 digests.")
@click.option("-R", "--recursive", is_flag=True, help="List every file below PATH, not only its direct entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (path, is_dir, size, digest).")
@common_options
def ls_cmd(run: str, path: str, long: bool, recursive: bool, as_json: bool, store: str | None) -> None:
    """List a run's artifacts under PATH (the run's root by default).

    Directories end with '/'. A file's digest is the plain BLAKE3 of its content,
    as `b3sum` prints it.
    """
    from casstore._paths import clean_optional_path
    from casstore.cli._common import open_runs
    from casstore.tracking._artifacts import list_entries

    runs = open_runs(store)
    view = runs.get_run(resolve_run_id(runs, run))
    base = clean_optional_path(path)
    if recursive:
        prefix = base + "/" if base else ""
        entries = [(p, False, a.size, a.digest) for p, a in sorted(view.artifacts.items())
                   if p == base or p.startswith(prefix)]
    else:
        entries = [(f.path, f.is_dir, f.file_size, f.digest) for f in list_entries(view, base)]
    if not entries and base:
        raise ObjectNotFoundError(f"run {view.run_id} has no artifact at {base!r} (see `casstore ls {view.run_id[:8]}`)")
    if as_json:
        emit_json([{"path": p, "is_dir": d, "size": s, "digest": g} for p, d, s, g in entries])
        return
    for p, is_dir, size, digest in entries:
        name = p + "/" if is_dir else p
        if long:
            click.echo(f"{'-' if size is None else size:>12}  {digest or '-':<64}  {name}")
        else:
            click.echo(name)


@click.command("cat", epilog="""\b
Examples:
  casstore cat 3f2a9c metrics/summary.json
  casstore cat 3f2a9c model/weights.bin | b3sum
""")
@click.argument("run", shell_complete=complete_run_id)
@click.argument("path")
@common_options
def cat_cmd(run: str, path: str, store: str | None) -> None:
    """Write one artifact's content to stdout, verifying every chunk before it is written.

    The whole-file digest is checked at the end; a mismatch is an error (exit 1).
    """
    from casstore._paths import clean_artifact_path
    from casstore.cli._common import open_runs

    runs = open_runs(store)
    view = runs.get_run(resolve_run_id(runs, run))
    p = clean_artifact_path(path)
    entry = view.artifacts.get(p)
    if entry is None:
        raise ObjectNotFoundError(f"run {view.run_id} has no artifact file {p!r} (see `casstore ls {view.run_id[:8]}`)")
    out = sys.stdout.buffer
    for data in runs.artifact_chunks(view.run_id, entry):
        out.write(data)
    out.flush()


@click.command("get", epilog="""\b
Examples:
  casstore get 3f2a9c model/weights.bin              # -> ./weights.bin
  casstore get 3f2a9c model -o ./model-v3             # a directory
  casstore get 3f2a9c -o ./run-files                  # every artifact
  casstore get 3f2a9c model --json | jq -r '.[].file'  # the paths written
""")
@click.argument("run", shell_complete=complete_run_id)
@click.argument("path", required=False, default="")
@click.option("-o", "--output", "dest", metavar="DEST", default=None,
              help="Where to write: a file path for a file, a directory otherwise "
                   "(default: the artifact's name, or the run id, in the current directory).")
@click.option("--force", is_flag=True,
              help="Replace local files that exist with other content (default: refuse, writing nothing).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: each file written (artifact path, file written, size, digest).")
@common_options
def get_cmd(run: str, path: str, dest: str | None, force: bool, as_json: bool, store: str | None) -> None:
    """Download an artifact file, a directory of artifacts, or all of a run's artifacts.

    Every file is verified before it appears at its destination; none is written
    outside DEST. A local file that exists with other content is never replaced
    without --force (nothing is written then); one that already holds the artifact's
    content is left as it is.
    """
    from casstore._files import write_files, writer_count
    from casstore._paths import clean_optional_path, safe_destination
    from casstore.cli._common import open_runs

    runs = open_runs(store)
    view = runs.get_run(resolve_run_id(runs, run))
    base = clean_optional_path(path)
    if base in view.artifacts:
        entry = view.artifacts[base]
        name = base.rsplit("/", 1)[-1]
        target = dest or name
        if os.path.isdir(target):
            target = os.path.join(target, name)
        items = [(entry, os.path.abspath(target))]
    else:
        prefix = base + "/" if base else ""
        chosen = [a for p, a in sorted(view.artifacts.items()) if p.startswith(prefix)]
        if not chosen:
            raise ObjectNotFoundError(
                f"run {view.run_id} has no artifact at {base!r}" if base else f"run {view.run_id} has no artifacts"
            )
        root = os.path.abspath(dest or (base.rsplit("/", 1)[-1] if base else view.run_id))
        if os.path.exists(root) and not os.path.isdir(root):
            raise LocalFileError(f"destination {root!r} exists and is not a directory")
        items = [(a, safe_destination(root, a.path[len(prefix):])) for a in chosen]  # all checked first
    todo = [(e, t) for e, t in items if not _holds(t, e.size, e.digest)]
    in_the_way = [t for _, t in todo if os.path.lexists(t)]
    if in_the_way and not force:
        raise LocalFileError(
            f"{len(in_the_way)} local file(s) exist with other content and would be replaced: "
            f"{', '.join(in_the_way[:3])}{' ...' if len(in_the_way) > 3 else ''}; nothing was written. "
            "Choose another destination with -o, or pass --force to replace them"
        )
    total = sum(a.size for a, _ in todo)
    with Progress() as progress, progress.task(f"downloading {len(todo)} file(s)", total) as advance:
        needed = {t for _, t in todo}  # the others hold their content already: left as they are

        def fetch(entry: Any, target: str) -> None:
            if target in needed:
                runs.artifact_to_file(view.run_id, entry, target, advance)

        write_files(items, fetch, lambda e: e.path,  # all of them: a name may lead to another's file
                    workers=writer_count(len(todo), runs.io_workers))
    if as_json:
        emit_json([{"path": e.path, "file": target, "size": e.size, "digest": e.digest} for e, target in items])
        return
    echo_files(((target, e.size, e.digest) for e, target in items), indent="")


def _holds(path: str, size: int, digest: str) -> bool:
    """Whether the local file ``path`` exists with exactly this content (its size, then its BLAKE3)."""
    from casstore.objects.digest import hash_file

    try:
        return os.path.isfile(path) and os.path.getsize(path) == size and hash_file(path) == (digest, size)
    except OSError:
        return False


# ---- log -----------------------------------------------------------------------------------


@click.command("log", epilog="""\b
Examples:
  casstore log model.pkl metrics.json --experiment fraud --name nightly
  casstore log ./plots --path figures                 # a directory, as figures/plots/...
  casstore log data.csv --run 3f2a9c --path inputs    # into an open run
""")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=True))
@click.option("--run", "run", default=None, metavar="RUN", shell_complete=complete_run_id,
              help="Log into this open run (default: a new run).")
@click.option("--path", "artifact_path", default=None, metavar="ARTIFACT_PATH",
              help="Directory inside the run to log under (default: the run's root).")
@click.option("--experiment", "-e", default=None, metavar="NAME", shell_complete=complete_experiment,
              help="Experiment of a new run (created if missing; default: Default).")
@click.option("--name", "run_name", default=None, help="Name of a new run.")
@click.option("--keep-open", is_flag=True, help="Leave a new run open (unsealed) to log more into it later.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the run id and digest and every file logged.")
@common_options
def log_cmd(files: tuple[str, ...], run: str | None, artifact_path: str | None, experiment: str | None,
            run_name: str | None, keep_open: bool, as_json: bool, store: str | None) -> None:
    """Log local files (and directories, recursively) as artifacts of a run.

    Without --run a new run is created and ended (sealed) after logging, unless
    --keep-open; its id and digest are printed. Files are chunked, deduplicated and
    bound immutably: logging other content at a path already bound fails.
    """
    from casstore._paths import clean_artifact_path, join_artifact_path
    from casstore.cli._common import open_runs
    from casstore.runs import DEFAULT_EXPERIMENT_NAME
    from casstore.tracking._artifacts import walk_dir
    from casstore.tracking.client import new_run_tags

    items: list[tuple[str, str]] = []
    for f in files:
        if os.path.isdir(f):
            name = os.path.basename(os.path.normpath(os.path.abspath(f)))
            items.extend(walk_dir(f, join_artifact_path(artifact_path, name)))
        else:
            items.append((join_artifact_path(artifact_path, os.path.basename(f)), f))
    if not items:
        raise LocalFileError(f"nothing to log: {', '.join(files)} hold(s) no files")
    for p, _ in items:  # a name that cannot be an artifact path is refused before a run is made for it
        clean_artifact_path(p)
    runs = open_runs(store, create=True)
    if run is not None:
        if experiment or run_name:
            raise InvalidInputError("--experiment and --name describe a new run; they cannot be used with --run")
        handle = runs.open_run(resolve_run_id(runs, run))
        new = False
    else:
        exp_id = runs.get_or_create_experiment(experiment or DEFAULT_EXPERIMENT_NAME)
        name, tags = new_run_tags({MLFLOW_SOURCE_NAME: "casstore log"}, run_name)
        handle = runs.create_run(exp_id, run_name=name, tags=tags)
        new = True
    total = sum(os.path.getsize(lp) for _, lp in items)
    try:
        with Progress() as progress, progress.task(f"logging {len(items)} file(s)", total) as advance:
            entries = handle.log_files(items, progress=advance)
    except BaseException as e:
        if new:
            handle.end("FAILED")
        if isinstance(e, KeyboardInterrupt):
            state = ("ended as FAILED; log the files again into a new run" if new else
                     "stays open; log the files into it again")
            click.echo(f"casstore: interrupted: run {handle.run_id} {state} (chunks already stored are not "
                       "written again)", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        raise
    digest = handle.end() if new and not keep_open else None
    if as_json:
        emit_json({"run_id": handle.run_id, "digest": digest, "sealed": digest is not None,
                   "artifacts": [{"path": e.path, "size": e.size, "digest": e.digest} for e in entries]})
        return
    echo_files(((e.path, e.size, e.digest) for e in entries), indent="")
    click.echo(f"run {handle.run_id}" + (f" sealed, digest {digest}" if digest else " (open)"))


# ---- delete-run ----------------------------------------------------------------------------


@click.command("delete-run", epilog="""\b
Examples:
  casstore delete-run 3f2a9c --reason "trained on the wrong split"   # shows the run, asks
  casstore delete-run 3f2a9c0d41b8e7a65c2f9d0e1b3a4c5d --yes          # a script: no question
  casstore gc        # later: reclaims what no live run or registered version needs
\b
A deletion cannot be undone. On a terminal the run is shown and you are asked
first (--yes skips the question). Without a terminal, a run named by a prefix of
its id is refused unless --yes: give the full 32-character id (`casstore runs
--json`) in scripts.
""")
@click.argument("run", shell_complete=complete_run_id)
@click.option("--reason", default="", help="Why the run is deleted (kept in the deletion record).")
@click.option("--yes", "-y", "yes", is_flag=True, help="Delete without asking (also a run named by an id prefix).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: the run, whether it was deleted now, and the registry versions that keep its model.")
@common_options
def delete_run_cmd(run: str, reason: str, yes: bool, as_json: bool, store: str | None) -> None:
    """Mark a run deleted (a record with time and reason; nothing is removed yet).

    `casstore gc` later reclaims the space of data that no live run and no registered
    model version references; a registered version keeps its model's files alive.
    The deletion cannot be undone: the run is shown and confirmed first (see below).
    """
    from casstore.cli._common import confirm, open_runs
    from casstore.runs.layout import is_run_id

    runs = open_runs(store)
    run_id = resolve_run_id(runs, run)
    if not runs.is_deleted(run_id) and not yes:
        confirm(f"delete {_describe_run(runs, run_id)}? This cannot be undone", exact=is_run_id(run.strip().lower()),
                refusal=f"{run!r} is a prefix of run id {run_id}; nothing was deleted. Deleting by a prefix needs "
                        f"a confirmation, and there is no terminal to ask on: give the full id ({run_id}), "
                        "or pass --yes")
    if runs.is_deleted(run_id):
        if as_json:
            emit_json({"run_id": run_id, "deleted": True, "already_deleted": True, "reason": reason, "pinned_by": []})
        else:
            click.echo(f"run {run_id} was already deleted", err=True)
        return
    try:
        view = runs.get_run(run_id)
    except (CorruptRecordError, IntegrityError) as e:  # a damaged run can be deleted all the same
        click.echo(f"warning: run {run_id} cannot be read ({e}); deleting it", err=True)
        view = None
    runs.delete_run(run_id, reason)
    pinned = _pinned_versions(runs, view) if view is not None else []
    if as_json:
        emit_json({"run_id": run_id, "deleted": True, "already_deleted": False, "reason": reason,
                   "pinned_by": [{"name": name, "version": version} for name, version in pinned]})
        return
    click.echo(f"run {run_id} deleted" + (f" ({reason})" if reason else ""))
    for name, version in pinned:
        click.echo(f"  its model is pinned by registered model {name} version {version}: those files stay")
    click.echo("space is reclaimed by `casstore gc` once the grace period has passed", err=True)


def _describe_run(runs: Any, run_id: str) -> str:
    """The run as a question shows it: id, name, experiment, status, start and artifacts."""
    try:
        view = runs.get_run(run_id, warn=False)
    except CasstoreError as e:
        return f"run {run_id} (it cannot be read: {e})"
    started = fmt_time(view.start_time) if view.start_time else "?"
    return (f"run {run_id} {view.run_name!r} (experiment {view.experiment_id}, {view.status}, started {started}, "
            f"{len(view.artifacts)} artifact(s), {len(view.models)} model(s))")


def _pinned_versions(runs: Any, view: Any) -> list[tuple[str, int]]:
    from casstore.registry import Registry

    digests = {ref.digest for ref in view.models.values()}
    if not digests:
        return []
    reg = Registry(runs.backend, runs.objects.layout)
    return [(mv.name, mv.version) for m in reg.list_models() for mv in reg.list_versions(m.name)
            if mv.model_digest in digests]


COMMANDS = [runs_cmd, experiments_cmd, show_cmd, ls_cmd, cat_cmd, get_cmd, log_cmd, delete_run_cmd]
