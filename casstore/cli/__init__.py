"""The ``casstore`` command: inspect, verify, audit, diff, account and collect garbage.

Thin wiring of the layers below, one module per command group:
``runs.py`` (runs, experiments, show, ls, cat, get, log, delete-run), ``audit.py`` (audit, diff),
``maintenance.py`` (verify, du, gc), ``models.py`` (models ...) and ``ui.py`` (ui). An error is one
line on stderr and a non-zero exit status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

import click

from casstore.cli._common import DEBUG_KEY, INTERRUPTED, STORE_KEY
from casstore import __version__
from casstore.exceptions import CasstoreError, DamagedRecordWarning

__all__ = ["cli", "main"]


class CommandFailed(click.ClickException):
    """An error reported as one line: ``casstore: error: <message>``, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"casstore: error: {self.format_message()}", err=True)


def _show_damage(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A warning (a damaged run skipped or shown in part) as one line on stderr."""
    click.echo(f"warning: {_one_line(str(message))}", err=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


#: Every command: its name, the module of ``casstore.cli`` that defines it (in that module's
#: ``COMMANDS``), and the first sentence of its help, which ``casstore --help`` lists. A
#: command's module is imported only when that command runs (tests/test_cli.py checks this
#: table against the modules).
COMMANDS: dict[str, tuple[str, str]] = {
    "runs": ("runs", "List runs as a table: id, name, status, start, params, metrics, digest."),
    "experiments": ("runs", "List experiments: id, name, live runs, created; deleted ones are marked."),
    "show": ("runs", "Show one run: its header, digest, params, metrics, tags, artifacts and models."),
    "ls": ("runs", "List a run's artifacts under PATH (the run's root by default)."),
    "cat": ("runs", "Write one artifact's content to stdout, verifying every chunk before it is written."),
    "get": ("runs", "Download an artifact file, a directory of artifacts, or all of a run's artifacts."),
    "log": ("runs", "Log local files (and directories, recursively) as artifacts of a run."),
    "delete-run": ("runs", "Mark a run deleted (a record with time and reason; nothing is removed yet)."),
    "audit": ("audit", "A report an auditor can archive: everything a run recorded, and proof it is intact."),
    "diff": ("audit", "Show the params, metrics, tags, artifacts and models that differ between two runs."),
    "verify": ("maintenance", "Re-hash stored data and check every record that points at it."),
    "du": ("maintenance", "Space used: logical bytes (what runs reference) against physical (what is stored)."),
    "gc": ("maintenance", "Collect garbage: delete data no live run and no registered model version references."),
    "pack-store": ("maintenance", "Convert a store of loose chunks to the packs layout, in place, verifying each chunk."),
    "upgrade": ("maintenance", "Upgrade the store to the current format version (6)."),
    "models": ("models", "Registered models: list them, their versions, show one, move an alias, serve and score them."),
    "import-mlflow": ("migrate", "Copy MLflow runs (params, tags, metric history, artifacts, models) into casstore."),
    "ui": ("ui", "Serve a read-only web UI over the store: runs, compare, artifacts, models, audit."),
}


class _Group(click.Group):
    """The commands of :data:`COMMANDS`, each loaded when it runs (click's lazy group); turns
    every error from the layers below into one clear line (unless ``--debug``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"casstore.cli.{COMMANDS[cmd_name][0]}")
        command: click.Command = next(c for c in module.COMMANDS if c.name == cmd_name)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as e:  # "Did you mean ...?" from the table, not the loaded commands
            raise click.exceptions.NoSuchCommand(e.command_name, possibilities=COMMANDS, ctx=ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list ``casstore --help`` shows, from the table: no command's module is loaded."""
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        with formatter.section("Commands"):
            # click shortens each line as it would the loaded command's own help
            formatter.write_dl([(name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit))
                                for name in self.list_commands(ctx)])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", DamagedRecordWarning)
                warnings.showwarning = _show_damage
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CasstoreError as e:
            if _debug(ctx):
                raise
            raise CommandFailed(_one_line(str(e))) from e
        except KeyboardInterrupt:
            # Ctrl-C: one line and the shell's status for SIGINT (128 + 2), as git and restic do
            click.echo("casstore: interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except BrokenPipeError:
            # the reader went away (`casstore cat ... | head`): not an error of ours
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
            except OSError:
                pass
            raise click.exceptions.Exit(0) from None
        except Exception as e:  # a bug or an unexpected environment problem: still one line
            if _debug(ctx):
                raise
            raise CommandFailed(
                _one_line(f"unexpected {type(e).__name__}: {e}") + " (run again with --debug to see the traceback)"
            ) from e


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(DEBUG_KEY)) or os.environ.get("CASSTORE_DEBUG", "") not in ("", "0")


EPILOG = """\b
Examples:
  casstore runs --experiment fraud
  casstore show 3f2a9c
  casstore verify --all
  casstore audit 3f2a9c --markdown > audit.md
  casstore gc --dry-run
"""


@click.group(cls=_Group, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version=__version__, prog_name="casstore")
@click.option("--store", metavar="URI", default=None, expose_value=False,
              callback=lambda ctx, _p, v: ctx.meta.__setitem__(STORE_KEY, v) if v else None,
              help="The store for the command (a local path or any fsspec URL).")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _p, v: ctx.meta.__setitem__(DEBUG_KEY, True) if v else None,
              help="Show the full traceback of an error.")
def cli() -> None:
    """casstore: a content-addressed, verified, deduplicated store for ML runs.

    Every command takes --store URI (a local path or any fsspec URL); the default is
    $CASSTORE_TRACKING_URI, else ./casstore, as for the Python API.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="casstore")
