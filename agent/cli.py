"""The `ragflow-backup` command line. Commands are thin: they load settings and call plain functions."""
from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from typer.core import TyperGroup

from agent.commands import agent as agent_commands
from agent.commands import audit as audit_commands
from agent.commands import backup as backup_commands
from agent.commands import restore as restore_commands
from agent.commands import setup as setup_commands
from agent.commands import status as status_commands
from agent.commands import timeline as timeline_commands
from agent.commands import worker as worker_commands
from agent.commands.common import accept_config_anywhere, console, errors, print_error, state, styled
from agent.commands.config import config_app
from agent.commands.json_views import JsonOption, doctor_view, emit
from agent.commands.notify import notify_app
from agent.commands.offsite import offsite_app
from agent.commands.queue import queue_app
from agent.doctor import Check, run_checks
from core.component import PermanentError
from core.config import CONFIG_ENV_VAR, ConfigError, Settings
from core.locks import Busy
from core.redact import redact, redact_logging


class RootGroup(TyperGroup):
    """The root command: every subcommand also takes -c/--config after its name (`status -c FILE`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        root_option = next(param for param in self.params if "--config" in param.opts)
        for command in self.commands.values():
            accept_config_anywhere(command, root_option)


# No local variables in tracebacks: they hold passwords. Completion: --install-completion / --show-completion.
app = typer.Typer(cls=RootGroup, no_args_is_help=True, add_completion=True, pretty_exceptions_show_locals=False,
                  help="Online, verified backups for self-hosted RAGFlow.")


def print_version(value: bool) -> None:
    if value:
        console.print(f"ragflow-backup {package_version('ragflow-backup')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", envvar=CONFIG_ENV_VAR, help="YAML config file.", show_default=False),
    ] = None,
    version: Annotated[bool, typer.Option("--version", callback=print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    state.config_path = config.resolve() if config else None  # a -c after the subcommand, parsed later, wins


@app.command("version")
def version_command() -> None:
    """Print the version."""
    console.print(f"ragflow-backup {package_version('ragflow-backup')}", highlight=False)


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Pre-flight checks: every configured service and the storage root; exits 1 if any fails."""

    settings = state.settings()
    checks = [*run_checks(settings), *ragflow_env_checks(settings)]
    table = Table(title="ragflow-backup doctor")
    for column in ("check", "status", "found", "how to fix"):
        table.add_column(column, overflow="fold")
    for check in checks:  # masked per cell: a folded cell would split a secret across lines
        table.add_row(check.name, styled(check.status), redact(check.detail), redact(check.fix))
    console.print(table)
    if as_json:
        emit("doctor", doctor_view(checks))
    failed = [check.name for check in checks if check.status == "fail"]
    if failed:
        errors.print(f"[red]{len(failed)} check(s) failed:[/red] {', '.join(failed)}")
        raise typer.Exit(1)


def ragflow_env_checks(settings: Settings) -> list:
    """A row per line of RAGFlow's .env that cannot be decoded (the rest of the file is still used)."""

    return [Check("RAGFlow .env", "warn", item.message(), "until then, a value on that line is not used")
            for item in settings.ragflow_env_file().unreadable]


app.command()(setup_commands.init)
app.command()(backup_commands.backup)
app.command()(backup_commands.verify)
app.command(name="list")(backup_commands.list_points)
app.command()(backup_commands.prune)
app.command()(worker_commands.worker)
app.command()(agent_commands.agent)
app.command()(agent_commands.run)
app.command()(status_commands.status)
app.command()(timeline_commands.timeline)
app.command()(restore_commands.restore)
app.command()(restore_commands.drill)
app.command()(audit_commands.audit)


def _register_sub_apps() -> None:

    app.add_typer(config_app, name="config")
    app.add_typer(queue_app, name="queue")
    app.add_typer(offsite_app, name="offsite")
    app.add_typer(notify_app, name="notify")


_register_sub_apps()


# The product's own errors that describe something to fix (a config, a lock held): a message, no traceback.
# Anything else is a bug and keeps its traceback.
USER_ERRORS: dict[type[Exception], int] = {ConfigError: 2, PermanentError: 1, Busy: 1}


def main() -> None:
    redact_logging()
    try:
        app()
    except tuple(USER_ERRORS) as exc:
        print_error(str(exc))
        raise SystemExit(next(code for kind, code in USER_ERRORS.items() if isinstance(exc, kind))) from None
