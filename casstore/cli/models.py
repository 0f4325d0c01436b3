"""The ``models`` group: registered models, their versions and aliases."""

from __future__ import annotations

from typing import Any

import click

from casstore.cli._common import (
    columns,
    common_options,
    complete_model_name,
    echo_files,
    emit_json,
    fmt_time,
    human_size,
    open_runs,
    print_table,
)

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
  casstore models serve -m models:/fraud@champion --port 5001
  casstore models predict -m models:/fraud/3 -i batch.csv -o predictions.json
""")
def models_group() -> None:
    """Registered models: list them, their versions, show one, move an alias, serve and
    score them."""


@models_group.command("list", epilog="""\b
Examples:
  casstore models list
  casstore models list --json | jq -r '.[].name'
""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def list_cmd(as_json: bool, store: str | None) -> None:
    """List registered models with their latest version and aliases."""
    runs = open_runs(store)
    from casstore.registry.store import warn_damaged

    models = _registry(runs).list_models(on_damaged=warn_damaged)
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


@models_group.command("versions", epilog="""\b
Examples:
  casstore models versions fraud
  casstore models versions fraud --json | jq -r '.[] | "\\(.version) \\(.model_digest)"'
""")
@click.argument("name", shell_complete=complete_model_name)
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


@models_group.command("show", epilog="""\b
Examples:
  casstore models show models:/fraud@champion
  casstore models show models:/fraud/3 --json > version.json
  casstore models show runs:/3f2a9c0e5d4b4c1e8f7a6b5c4d3e2f1a/model
""")
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


@models_group.command("alias", epilog="""\b
Examples:
  casstore models alias fraud champion 3
  casstore models alias fraud champion 4 --json
""")
@click.argument("name", shell_complete=complete_model_name)
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


_URI_HELP = (
    "The model: runs:/<run>/<name>, models:/<name>/<version>, models:/<name>@<alias>, "
    "models:/<name>/latest, cas:<model digest>, or a local MLflow model directory."
)


def _opener(store: str | None, uri: str) -> Any:
    """Opens the store for ``uri`` (none for a local model directory), in any process or
    thread: the store's location is settled here, once."""
    from casstore.cli._common import store_uri
    from casstore.serving.model import is_local_dir

    if is_local_dir(uri):
        return None
    location = store_uri(store)
    open_runs(location)  # a missing store is an error now, not in a worker
    return lambda: open_runs(location)


def _local_env_only(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value != "local":
        raise click.BadParameter(
            f"{value!r}: casstore uses the current Python environment and builds no other; install the model's "
            "requirements here and pass --env-manager local (or leave the option out)", ctx, param)
    return value


#: MLflow's --env-manager, so its command lines work: only ``local``, what casstore does
_env_manager = click.option(
    "--env-manager", default="local", show_default=True, metavar="local", callback=_local_env_only, expose_value=False,
    help="As MLflow's; casstore uses the current environment, so only 'local' is taken.")


#: MLflow's flags that choose or fill an environment: taken so its command lines work, with
#: nothing to do in the current environment (``--no-conda`` is MLflow's old ``--env-manager local``)
_install_mlflow = click.option(
    "--install-mlflow", is_flag=True, expose_value=False,
    help="As MLflow's; casstore builds no environment to install MLflow into, so it changes nothing.")
_no_conda = click.option(
    "--no-conda", is_flag=True, expose_value=False,
    help="As MLflow's: use the current environment, which casstore always does.")


@models_group.command("serve", context_settings={"help_option_names": ["--help"]}, epilog="""\b
Examples:
  casstore models serve -m models:/fraud@champion --port 5001
  casstore models serve -m models:/fraud@champion --workers 4 --follow-alias 30
  curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
       -d '{"dataframe_records": [{"amount": 700.0, "age_days": 2.0}]}'
""")
@click.option("-m", "--model-uri", "model_uri", required=True, metavar="MODEL_URI", help=_URI_HELP)
@click.option("-h", "--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("-p", "--port", default=5001, show_default=True, type=click.IntRange(0, 65535), help="The port to listen on.")
@click.option("-w", "--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes; each holds the model in memory (shared copy-on-write until written to).")
@click.option("--follow-alias", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", default=None,
              help="Re-resolve an alias (or latest) every SECONDS; swap in a new version once it is fetched and verified.")
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=64, show_default=True,
              help="The largest request body read, in MiB; larger requests get 413.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), default=60, show_default=True,
              help="Seconds a prediction may take; a request that takes longer gets 504.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="What the server logs on stderr (info logs every request).")
@_env_manager
@_no_conda
@_install_mlflow
@common_options
def serve_cmd(model_uri: str, host: str, port: int, workers: int, follow_alias: float | None, max_body_mb: float,
              timeout: float, log_level: str, store: str | None) -> None:
    """Serve a model over HTTP: MLflow's scoring protocol and the Open Inference Protocol.

    The model is fetched and every byte verified before it is unpickled; a tampered
    file stops the server before it starts. Every response carries the model's digest
    (X-Casstore-Model-Digest) and registry version (X-Casstore-Model-Version).

    \b
    GET  /ping, /health, /version
    POST /invocations            application/json or text/csv, as MLflow's server
    GET  /v2/health/ready, /v2/models/<name>
    POST /v2/models/<name>/infer
    """
    from casstore.serving import require_serving

    require_serving()
    from casstore.serving.server import ServeOptions, serve

    options = ServeOptions(host=host, port=port, workers=workers, follow_alias=follow_alias,
                           max_body=int(max_body_mb * (1 << 20)), timeout=timeout, log_level=log_level)
    serve(model_uri, _opener(store, model_uri), options)


@models_group.command("predict", epilog="""\b
Examples:
  casstore models predict -m models:/fraud/3 -i batch.csv -o predictions.json
  casstore models predict -m models:/fraud@champion -i batch.json
  printf 'amount,age_days\\n700.0,2.0\\n' | casstore models predict -m models:/fraud/1 -i - -t csv
""")
@click.option("-m", "--model-uri", "model_uri", required=True, metavar="MODEL_URI", help=_URI_HELP)
@click.option("-i", "--input-path", "input_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="The input: a JSON file in a form /invocations takes, or a CSV file with a header row ('-': stdin).")
@click.option("-o", "--output-path", "output_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Where to write the predictions as JSON (default: stdout).")
@click.option("-t", "--content-type", type=click.Choice(["json", "csv"]), default=None,
              help="The input's format (default: csv for a .csv file, else json).")
@_env_manager
@_install_mlflow
@common_options
def predict_cmd(model_uri: str, input_path: str, output_path: str | None, content_type: str | None,
                store: str | None) -> None:
    """Score a file of inputs with a model, as the server would answer it.

    The model is fetched and verified before it is unpickled; the input is read and
    checked against its signature as /invocations does.
    """
    from casstore.exceptions import LocalFileError
    from casstore.serving import require_serving

    require_serving()
    from casstore.serving.batch import write_predictions
    from casstore.serving.model import load_served
    from casstore.serving.payload import CSV, JSON

    kind = content_type or ("csv" if input_path.lower().endswith(".csv") else "json")
    try:
        with click.open_file(input_path, "rb") as f:
            body = f.read()
    except OSError as e:
        raise LocalFileError(f"cannot read the input {input_path!r}: {e.strerror or e}") from e
    model = load_served(model_uri, _opener(store, model_uri))
    write_predictions(model.invoke(body, CSV if kind == "csv" else JSON), output_path)
    if output_path is not None:
        click.echo(f"wrote predictions for {model_uri} (digest {model.digest}) to {output_path}", err=True)


COMMANDS = [models_group]
