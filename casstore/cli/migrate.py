"""``import-mlflow``: copy MLflow runs, or an MLflow artifact directory, into the store."""

from __future__ import annotations

import click

from casstore.cli._common import common_options, emit_json, human_size, store_uri

__all__ = ["COMMANDS"]


@click.command("import-mlflow", epilog="""\b
Examples:
  casstore import-mlflow --experiment fraud --mlflow-uri sqlite:///mlflow.db
  casstore import-mlflow 0f5c2b9e4d1a4c3b8a7f6e5d4c3b2a19 --mlflow-uri http://mlflow:5000
  casstore import-mlflow --dir mlruns/1/0f5c2b9e.../artifacts --into fraud
\b
Importing again is safe: a run already imported is reported, not copied twice.
""")
@click.argument("run_ids", nargs=-1, metavar="[MLFLOW_RUN_ID...]")
@click.option("--experiment", "-e", "mlflow_experiment", default=None, metavar="NAME",
              help="Import every ended run of this MLflow experiment.")
@click.option("--dir", "local_dir", default=None, metavar="PATH", type=click.Path(file_okay=False),
              help="Import a local artifact directory as one run (MLflow not needed).")
@click.option("--mlflow-uri", default=None, metavar="URI",
              help="Where MLflow keeps the runs (default: $MLFLOW_TRACKING_URI, else MLflow's default).")
@click.option("--into", "into", default=None, metavar="NAME",
              help="casstore experiment to import into (default: the MLflow experiment's name; Default for --dir).")
@click.option("--name", "run_name", default=None, help="Run name for --dir (default: the directory's name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per imported run.")
@common_options
def import_mlflow_cmd(run_ids: tuple[str, ...], mlflow_experiment: str | None, local_dir: str | None,
                      mlflow_uri: str | None, into: str | None, run_name: str | None, as_json: bool,
                      store: str | None) -> None:
    """Copy MLflow runs (params, tags, metric history, artifacts, models) into casstore.

    Each MLflow run becomes a sealed casstore run with the same name, start time and
    status, tagged casstore.import.source=mlflow:<run id>. sklearn models become
    casstore models, loadable (verified) from runs:/<new run id>/<model name>.
    Give MLflow run ids, --experiment, or --dir (exactly one of the three).
    """
    from dataclasses import asdict

    from casstore import migrate

    if sum(map(bool, (run_ids, mlflow_experiment, local_dir))) != 1:
        raise click.UsageError("give MLflow run ids, --experiment NAME, or --dir PATH (exactly one)")
    if run_name and not local_dir:
        raise click.UsageError("--name is for --dir; an MLflow run keeps its own name")
    uri = store_uri(store)
    if local_dir:
        done = [migrate.import_artifact_dir(local_dir, experiment=into, run_name=run_name, tracking_uri=uri)]
    elif mlflow_experiment:
        done = migrate.import_mlflow_experiment(mlflow_experiment, mlflow_tracking_uri=mlflow_uri,
                                                experiment=into, tracking_uri=uri)
    else:
        done = [migrate.import_mlflow_run(r, mlflow_tracking_uri=mlflow_uri, experiment=into, tracking_uri=uri)
                for r in run_ids]
    if as_json:
        emit_json([asdict(d) for d in done])
        return
    for d in done:
        what = "already imported as" if d.already_imported else "->"
        models = f", models: {', '.join(d.models)}" if d.models else ""
        click.echo(f"{d.source} {what} run {d.run_id} ({d.artifacts} files, {human_size(d.bytes)}{models}) "
                   f"digest {d.digest}")
    if not done:
        click.echo("no ended runs to import", err=True)


COMMANDS = [import_mlflow_cmd]
