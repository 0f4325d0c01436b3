"""Maintenance commands: ``verify``, ``du``, ``gc`` and ``pack-store``."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import click

from casstore.cli._common import (
    Progress,
    common_options,
    complete_run_id,
    emit_json,
    human_size,
    open_runs,
    print_table,
    resolve_run_id,
)

__all__ = ["COMMANDS", "print_problems"]


def print_problems(report: Any) -> None:
    """Each problem on one line, then what it affects, indented."""
    from casstore.maintenance.verify import describe_affected

    for p in report.problems:
        click.echo(f"{p.kind.upper()} {p.object}: {p.detail}")
        for a in p.affects:
            click.echo(f"    affects {describe_affected(a)}")


@click.command("verify", epilog="""\b
Examples:
  casstore verify --all                 # every chunk, recipe, manifest, model and registry pin
  casstore verify 3f2a9c 8e1d07         # what these runs reference, file by file
  casstore verify --all --json > verify.json; echo $?
\b
Exit status: 0 when everything verifies, 1 when anything is corrupt or missing.
""")
@click.argument("run_ids", nargs=-1, metavar="[RUN...]", shell_complete=complete_run_id)
@click.option("--all", "all_", is_flag=True, help="Verify the whole store.")
@click.option("--deep", is_flag=True,
              help="With --all, also re-hash every file's whole content against its digest (reads shared chunks again).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@common_options
def verify_cmd(run_ids: tuple[str, ...], all_: bool, deep: bool, as_json: bool, store: str | None) -> None:
    """Re-hash stored data and check every record that points at it.

    With --all: every chunk is re-hashed once, every file recipe checked against its
    chunks, every model entry against its digest, every sealed run's manifest against
    its seal, and every registry version's pinned model. With RUN ids: every file
    those runs reference is read and re-hashed, chunk by chunk and whole.

    Each problem names the object and the runs, artifacts, models and registry
    versions it affects.
    """
    from casstore.maintenance.verify import verify_store

    if bool(run_ids) == all_:
        raise click.UsageError("give run ids to verify, or --all for the whole store (not both)")
    runs = open_runs(store)
    ids = None if all_ else [resolve_run_id(runs, r) for r in run_ids]
    with Progress() as progress:
        report = verify_store(runs, ids, deep=deep, progress=progress.callback)
    if as_json:
        emit_json(report.to_dict())
    else:
        print_problems(report)
        click.echo(verify_outcome(report.to_dict()), err=not report.ok)
        if note := unchecked_note(report.checked):
            click.echo(note, err=True)
    if not report.ok:
        raise click.exceptions.Exit(1)


def verify_outcome(report: Mapping[str, Any]) -> str:
    """The line ``casstore verify`` ends with, from a report's :meth:`to_dict` (the UI shows it too)."""
    c = report["checked"]
    summary = (f"{c.get('chunks', 0)} chunks ({human_size(c.get('bytes', 0))}), {c.get('files', 0)} files, "
               f"{c.get('models', 0)} models, {c.get('runs', 0)} runs, {c.get('registry_versions', 0)} registry versions"
               + (f", {c['records']} records" if c.get("records") else ""))
    if report["ok"]:
        return f"OK: verified {summary} in {report['seconds']:.1f}s"
    return f"FAILED: {len(report['problems'])} problem(s) in {summary}"


def unchecked_note(checked: Mapping[str, Any]) -> str | None:
    """What ``casstore verify`` says of records written without their own check, if any."""
    if not checked.get("records_unchecked"):
        return None
    return (f"note: {checked['records_unchecked']} record(s) were written by an older casstore without their own "
            "check: they were decoded and type-checked, but a changed byte in them can only be found where "
            "another digest covers it (a sealed run's manifest)")


@click.command("du", epilog="""\b
Examples:
  casstore du                       # every live run, per experiment and per run
  casstore du 3f2a9c 8e1d07 --json
""")
@click.argument("run_ids", nargs=-1, metavar="[RUN...]", shell_complete=complete_run_id)
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the most shared files and chunks to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@common_options
def du_cmd(run_ids: tuple[str, ...], top: int, as_json: bool, store: str | None) -> None:
    """Space used: logical bytes (what runs reference) against physical (what is stored).

    Per experiment and per run: logical bytes, unique bytes (distinct chunks) and
    exclusive bytes (chunks no other live run or registered model needs: what
    deleting the run and running gc would reclaim), the dedup ratio, and the most
    shared files and chunks.
    """
    from casstore.maintenance.du import disk_usage

    runs = open_runs(store)
    ids = [resolve_run_id(runs, r) for r in run_ids] or None
    with Progress() as progress:
        report = disk_usage(runs, ids, top=top, progress=progress.callback)
    if as_json:
        emit_json(report.to_dict())
        return
    t = report.total
    click.echo(f"logical {human_size(t.logical)}  physical {human_size(t.physical)}  dedup ratio {t.ratio:.2f}x  "
               f"({t.runs} runs)")
    s = report.store
    held = f" and {human_size(s['inline_bytes'])} of small artifacts in their run records" if s.get("inline_bytes") else ""
    click.echo(f"store: {human_size(s['stored_bytes'])} in {s['chunks']} chunks{held}; "
               f"{human_size(s['unreferenced_bytes'])} referenced by no live run or registered model "
               f"({s['deleted_runs']} deleted runs)")
    if report.experiments:
        click.echo()
        print_table(["experiment", "runs", "logical", "physical", "ratio"],
                    [(g.name, g.runs, human_size(g.logical), human_size(g.physical), f"{g.ratio:.2f}x")
                     for g in report.experiments], right=("runs", "logical", "physical", "ratio"))
    if report.runs:
        click.echo()
        print_table(["run", "name", "files", "logical", "unique", "exclusive", "ratio"],
                    [(u.run_id, u.run_name, u.files, human_size(u.logical), human_size(u.unique),
                      human_size(u.exclusive), f"{u.ratio:.2f}x") for u in report.runs],
                    right=("files", "logical", "unique", "exclusive", "ratio"))
    if report.top_files:
        click.echo()
        print_table(["shared file", "size", "bindings", "runs", "saved", "example path"],
                    [(f["digest"][:16], human_size(f["size"]), f["bindings"], f["runs"], human_size(f["saved"]), f["path"])
                     for f in report.top_files], right=("size", "bindings", "runs", "saved"))
    if report.top_chunks:
        click.echo()
        print_table(["shared chunk", "size", "files", "runs", "saved"],
                    [(c["digest"][:16], human_size(c["size"]), c["files"], c["runs"], human_size(c["saved"]))
                     for c in report.top_chunks], right=("size", "files", "runs", "saved"))
    if report.unreadable_runs:
        click.echo(f"\n{len(report.unreadable_runs)} run(s) could not be read (run `casstore verify --all`): "
                   + ", ".join(r[:12] for r in report.unreadable_runs[:5]), err=True)


@click.command("gc", epilog="""\b
Examples:
  casstore gc --dry-run             # what would be deleted now, and marked for later
  casstore gc                       # sweep what earlier runs marked, mark what is garbage now
  casstore gc --grace 1h
  casstore gc --no-writers          # the store is idle: reclaim everything unreferenced now
\b
An object is deleted only by a later gc run, at least the grace period after an
earlier run found it unreferenced, and only if no writer created or reused it in
between. Run gc periodically (e.g. daily) to reclaim space.
\b
Exit status: 1 when a live reference (a run record, manifest, recipe, model entry
or registry record) cannot be read or proven; gc then deletes and marks nothing.
""")
@click.option("--dry-run", is_flag=True, help="Change nothing; say what would be deleted and marked.")
@click.option("--grace", default="24h", show_default=True, metavar="DURATION",
              help="Objects created or reused within this time are never removed: a number with its unit (24h, 30m, 7d, 0s).")
@click.option("--no-writers", is_flag=True,
              help="Promise that no one writes to the store while gc runs: delete what is unreferenced now, in "
                   "this one run, without waiting for a grace period. Refused while a writer is seen.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@common_options
def gc_cmd(dry_run: bool, grace: str, no_writers: bool, as_json: bool, store: str | None) -> None:
    """Collect garbage: delete data no live run and no registered model version references.

    Safe while other processes write: two-phase mark and sweep with a grace period;
    see docs/design.md, "Garbage collection", for the argument.
    """
    from casstore.maintenance.gc import collect_garbage, format_duration, parse_duration

    seconds = parse_duration(grace)
    runs = open_runs(store)
    with Progress() as progress:
        report = collect_garbage(runs.backend, grace=seconds, dry_run=dry_run, progress=progress.callback,
                                 no_writers=no_writers)
    if as_json:
        emit_json(report.to_dict())
        if report.blocked:
            raise click.exceptions.Exit(1)
        return
    if report.blocked:
        for b in report.blocked:
            click.echo(f"UNPROVEN {b['object']}: {b['detail']}\n    affects {b['affects']}")
        click.echo(
            f"gc deleted and marked nothing: {len(report.blocked)} live reference(s) could not be read or proven, "
            "and what they reference cannot be told from garbage. Restore the damaged objects from a backup "
            "(`casstore verify --all` lists them), or delete the runs they belong to (`casstore delete-run`), "
            "then run gc again.", err=True)
        raise click.exceptions.Exit(1)
    packed = runs.objects.layout.packed  # a store of packs: gc deletes and marks whole packs
    total, kinds = _objects({**report.deleted, "packs": report.packs_deleted}, packed)
    click.echo(f"{'would delete' if dry_run else 'deleted'} {total} objects ({human_size(report.deleted_bytes)}): {kinds}")
    if report.kept_total:
        click.echo(f"kept {report.kept_total} marked objects that were reused or referenced since they were marked")
    if report.indexes_folded:
        click.echo(f"folded {report.indexes_folded} small index objects of packs into {report.indexes_written}")
    if report.repacked:
        click.echo(f"repacked {report.repacked} packs whose chunks were mostly garbage (their live chunks copied)")
    total, kinds = _objects(report.marked, packed)
    click.echo(f"{'would mark' if dry_run else 'marked'} {total} unreferenced objects "
               f"({human_size(report.marked_bytes)}): {kinds}")
    if report.next_sweep is not None and report.marked_total:
        when = _dt.datetime.fromtimestamp(report.next_sweep).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"a gc run after {when} (grace {format_duration(report.grace)}) deletes those still unreferenced")
    if report.tmp_removed:
        click.echo(f"removed {report.tmp_removed} temporary files left by interrupted writers")
    if not report.exact and not dry_run:
        click.echo("note: this backend re-checks each object just before deleting it, not atomically with it; "
                   "see docs/design.md", err=True)


def _objects(counts: dict[str, int], packs: bool) -> tuple[int, str]:
    """How many objects, and of which kinds: chunks, files, model entries (and packs, in a
    store of packs)."""
    kinds = [("chunks", "chunks"), ("files", "files"), ("models", "model entries")] + ([("packs", "packs")] if packs else [])
    return (sum(counts.get(k, 0) for k, _ in kinds),
            ", ".join(f"{counts.get(k, 0)} {name}" for k, name in kinds))


@click.command("pack-store", epilog="""\b
Examples:
  casstore pack-store --store s3://bucket/team    # convert a store of loose chunks to packs
\b
Safe to interrupt: run it again and it goes on from where it stopped. The store reads
whole at every point. Casstore releases without packs refuse the store afterwards.
""")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@common_options
def pack_store_cmd(as_json: bool, store: str | None) -> None:
    """Convert a store of loose chunks to the packs layout, in place, verifying each chunk.

    Loose chunks are copied into packs (each verified first), the store's config is
    switched to the packs layout, chunks written meanwhile are packed too, and each loose
    chunk is removed once its copy in a pack has been read back and verified.
    """
    from casstore.maintenance.topacks import convert_to_packs

    runs = open_runs(store)
    with Progress() as progress:
        report = convert_to_packs(runs.backend, progress=progress.callback)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"packed {report.packed_chunks} chunks ({human_size(report.packed_bytes)}) into "
               f"{report.packs_written} packs; {report.already_packed} were packed already; "
               f"removed {report.loose_deleted} loose chunks")
    if report.config_switched:
        click.echo("the store now has the packs layout")
    for key in report.damaged:
        click.echo(f"DAMAGED {key}: left as it is; run `casstore verify --all`", err=True)
    if report.damaged:
        raise SystemExit(1)


@click.command("upgrade", epilog="""\b
Examples:
  casstore upgrade --store s3://team-bucket/ml
\b
Upgrades a store of format version 3, 4 or 5 to version 6. From version 3: a run's params,
tags and metrics in one record per logging call, the manifest in the seal, and a search
index beside the store. On a local disk, a sealed run then keeps its seal only (the
records it holds are removed). Version 6 names run entries in time order (searches on S3
list only an experiment's newest entries): a version-5 store gets its casstore.json
written again. No content is rewritten. Run it while no other process writes to the
store (it refuses while it sees a writer's metric log on this machine); an interrupted
upgrade is run again. casstore releases before version 6 cannot
open the store afterwards. On a version-6 store whose casstore.json has no check of its
own (b3), it adds the check.
""")
@common_options
def upgrade_cmd(store: str | None) -> None:
    """Upgrade the store to the current format version (6)."""
    from casstore.maintenance.upgrade import upgrade_store

    report = upgrade_store(open_runs(store))
    if report.from_version == report.to_version:
        click.echo(f"format version {report.to_version} already; casstore.json now carries its own check")
        return
    click.echo(f"upgraded from format version {report.from_version} to {report.to_version}: "
               f"{report.open_runs} open run(s) given their batch record, {report.summaries} run(s) in the search "
               f"index, {report.compacted} sealed run(s) compacted")


COMMANDS = [verify_cmd, du_cmd, gc_cmd, pack_store_cmd, upgrade_cmd]
