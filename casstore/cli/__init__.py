"""The ``casstore`` command: inspect, verify, audit, diff, account and collect garbage.

Thin wiring of the layers below, one module per command group:
``runs.py`` (runs, show, ls, cat, get, log, delete-run), ``audit.py`` (audit, diff),
``maintenance.py`` (verify, du, gc), ``models.py`` (models ...) and ``ui.py`` (ui). An error is one
line on stderr and a non-zero exit status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import click

from casstore.cli._common import DEBUG_KEY, STORE_KEY
from casstore import __version__
from casstore.exceptions import CasstoreError, DamagedRunWarning

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


class _Group(click.Group):
    """Turns every error from the layers below into one clear line (unless ``--debug``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", DamagedRunWarning)
                warnings.showwarning = _show_damage
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CasstoreError as e:
            if _debug(ctx):
                raise
            raise CommandFailed(_one_line(str(e))) from e
        except KeyboardInterrupt:
            raise click.exceptions.Abort() from None
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


def _register() -> None:
    from casstore.cli import audit, maintenance, migrate, models, runs, ui

    for mod in (runs, audit, maintenance, models, migrate, ui):
        for command in mod.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="casstore")
