"""The ``p2pfl`` command line. Thin: it parses, builds a config, calls the library, prints.

Bad flags or config values exit with status 2 and one line naming the field and what is
allowed. The CLI is the only place that reads environment variables (``P2PFL_DATA``).
The library modules import neither click nor this package.

======================  ==============================================================
``p2pfl run``           :mod:`p2pfl.cli.runs`: a whole experiment on this machine
``p2pfl node``          :mod:`p2pfl.cli.deploy`: one node of a deployment
``p2pfl keygen``        :mod:`p2pfl.cli.deploy`: CurveZMQ key pairs
``p2pfl sweep``         :mod:`p2pfl.cli.results`: every cell of an experiment file
``p2pfl report``        :mod:`p2pfl.cli.results`: plots of a run or sweep folder
``p2pfl topology show`` :mod:`p2pfl.cli.graphs`: inspect and draw a graph
======================  ==============================================================
"""

from __future__ import annotations

import logging
import os
import sys

import click

from ..errors import ConfigError, DataError, P2PFLError
from ._common import search_path
from .deploy import deployment, keygen, node
from .graphs import topology
from .results import report, sweep
from .runs import build_config, parse_role, print_result, run


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="p2pfl")
def cli() -> None:
    """p2pfl: serverless gossip learning for studying model poisoning and local defences."""


for _command in (run, node, deployment, keygen, sweep, report, topology):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors with exit status 2 for bad input."""
    try:
        cli.main(args=argv, prog_name="p2pfl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        _exit_now(130)
    except click.exceptions.ClickException as exc:  # usage errors, bad option values
        click.echo(f"p2pfl: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except ConfigError as exc:
        click.echo(f"p2pfl: error: {exc}", err=True)
        sys.exit(2)
    except DataError as exc:
        click.echo(f"p2pfl: data error: {exc}", err=True)
        sys.exit(1)
    except P2PFLError as exc:
        click.echo(f"p2pfl: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        _exit_now(130)


def _exit_now(code: int) -> None:
    """Exit at once after Ctrl-C: files are closed and checkpoints committed by then, and the
    interpreter's final garbage collection of a torch process can take seconds on a busy
    machine (measured: 2-3 s of a 3 s stop), which a user waiting on Ctrl-C should not pay."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


__all__ = ["build_config", "cli", "main", "parse_role", "print_result", "search_path"]
