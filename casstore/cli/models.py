"""The ``models`` group: registered models, their versions and aliases."""

from __future__ import annotations

from typing import Any

import click

from casstore.cli._common import columns, common_options, echo_files, emit_json, fmt_time, human_size, open_runs, print_table

__all__ = ["COMMANDS"]


def _registry(runs: Any) -> Any:
    from casstore.registry import Registry

    return Registry(runs.backend, runs.objects.layout)


def _version_dict(mv: Any) -> dict[str, Any]:
    return {
        "name": mv.name,
        "version": mv.version,
        "model_digest": mv.model_digest,
        "run_id": mv.run_id,
        "source": mv.source,
        "aliases": list(mv.aliases),
        "tags": dict(mv.tags),
        "description": mv.description,
        "creation_timestamp": mv.creation_timestamp,
        "model_uri": mv.model_uri,
    }


@click.group("models", epilog="""\b
Examples:
  casstore models list
  casstore models versions fraud
  casstore models show models:/fraud@champion
  casstore models alias fraud champion 3
""")
def models_group() -> None:
    """Registered models: list them, their versions, show one, move an alias."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def list_cmd(as_json: bool, store: str | None) -> None:
    """List registered models with their latest version and aliases."""
    runs = open_runs(store)
    models = _registry(runs).list_models()
    if as_json:
        emit_json([{"name": m.name, "latest_version": m.latest_versions[0].version if m.latest_versions else None,
                    "aliases": dict(m.aliases), "tags": dict(m.tags), "description": m.description,
                    "creation_timestamp": m.creation_timestamp} for m in models])
        return
    if not models:
        click.echo("no registered models", err=True)
        return
    print_table(["name", "latest", "aliases", "updated"],
                [(m.name, m.latest_versions[0].version if m.latest_versions else "-",
                  " ".join(f"{a}->{v}" for a, v in sorted(m.aliases.items())), fmt_time(m.last_updated_timestamp))
                 for m in models])


@models_group.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def versions_cmd(name: str, as_json: bool, store: str | None) -> None:
    """List the versions of a registered model, each with the model digest it pins."""
    runs = open_runs(store)
    versions = _registry(runs).list_versions(name)
    if as_json:
        emit_json([_version_dict(mv) for mv in versions])
        return
    print_table(["version", "model digest", "run", "aliases", "created"],
                [(mv.version, mv.model_digest, mv.run_id or "-", " ".join(mv.aliases), fmt_time(mv.creation_timestamp))
                 for mv in versions], right=("version",))


@models_group.command("show")
@click.argument("model_uri")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def show_cmd(model_uri: str, as_json: bool, store: str | None) -> None:
    """Show a model: its digest, flavors, requirements, signature and files.

    MODEL_URI is runs:/<run>/<name>, models:/<name>/<version>, models:/<name>@<alias>,
    models:/<name>/latest or cas:<model digest>. The entry is verified against its digest.
    """
    from casstore.models.fetch import load_entry
    from casstore.models.uri import resolve_model_uri

    runs = open_runs(store)
    reg = _registry(runs)
    resolved = resolve_model_uri(model_uri, runs, reg)
    entry = load_entry(runs, resolved.model_digest)
    pins = [mv for m in reg.list_models() for mv in reg.list_versions(m.name) if mv.model_digest == resolved.model_digest]
    d = {
        "uri": model_uri,
        "model_digest": resolved.model_digest,
        "name": entry.name,
        "run_id": entry.run_id,
        "created": entry.created,
        "flavors": _mlmodel_flavors(runs, entry),
        "requirements": list(entry.requirements),
        "signature": entry.signature,
        "files": {p: {"digest": f.digest, "size": f.size} for p, f in sorted(entry.files.items())},
        "registry_versions": [_version_dict(mv) for mv in pins],
    }
    if as_json:
        emit_json(d)
        return
    lines = [
        ("model", entry.name),
        ("digest", resolved.model_digest),
        ("run", entry.run_id or "-"),
        ("created", entry.created or "-"),
        ("flavors", ", ".join(sorted(entry.flavors))),
        ("requirements", ", ".join(entry.requirements) or "-"),
    ]
    if entry.signature:
        lines += [("signature", f"inputs   {_schema(entry.signature.get('inputs'))}"),
                  ("", f"outputs  {_schema(entry.signature.get('outputs'))}")]
    lines.append(("registry", ", ".join(f"{mv.name} v{mv.version}" for mv in pins) or "none"))
    for line in columns(lines):
        click.echo(line)
    click.echo(f"\nfiles ({len(entry.files)}, {human_size(entry.size)})")
    echo_files((p, f.size, f.digest) for p, f in sorted(entry.files.items()))


def _schema(part: Any) -> str:
    """A signature's inputs or outputs, every column or tensor of it: never cut short."""
    from casstore.exceptions import CorruptRecordError
    from casstore.models.signature import Schema

    if not part:
        return "-"
    try:
        return ", ".join(repr(spec) for spec in Schema.from_json(part))
    except CorruptRecordError:
        return str(part)  # not a schema casstore reads: shown as recorded


def _mlmodel_flavors(runs: Any, entry: Any) -> Any:
    """The flavors as the model's ``MLmodel`` file gives them (what MLflow's tools read:
    ``loader_module: mlflow.sklearn``), read verified from the store; the entry's own
    when the model has no readable ``MLmodel``."""
    import yaml

    ref = entry.files.get("MLmodel")
    if ref is None:
        return entry.flavors
    try:
        ml = yaml.safe_load(runs.objects.get_bytes(ref.digest))
    except yaml.YAMLError:
        return entry.flavors
    flavors = ml.get("flavors") if isinstance(ml, dict) else None
    return flavors if isinstance(flavors, dict) else entry.flavors


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the alias and the version it now points at.")
@common_options
def alias_cmd(name: str, alias: str, version: str, as_json: bool, store: str | None) -> None:
    """Point ALIAS of registered model NAME at VERSION (recorded in the alias's history)."""
    runs = open_runs(store)
    reg = _registry(runs)
    reg.set_alias(name, alias, version)
    mv = reg.get_version_by_alias(name, alias)
    if as_json:
        emit_json({"name": name, "alias": alias, "version": mv.version, "model_digest": mv.model_digest,
                   "model_uri": f"models:/{name}@{alias}"})
        return
    click.echo(f"models:/{name}@{alias} -> version {mv.version} ({mv.model_digest})")


COMMANDS = [models_group]
