"""The `ragflow-backup` command line. Commands are thin: they load settings and call plain functions."""
from __future__ import annotations

from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from agent.config import CONFIG_ENV_VAR, ConfigError, Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Online, verified backups for self-hosted RAGFlow.")
console = Console()
errors = Console(stderr=True)


class State:
    config_path: Path | None = None

    def settings(self) -> Settings:
        try:
            return load_settings(self.config_path)
        except ConfigError as exc:
            errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            raise typer.Exit(2) from None


state = State()


@app.callback()
def main_options(
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", envvar=CONFIG_ENV_VAR, help="YAML config file.", show_default=False),
    ] = None,
) -> None:
    state.config_path = config


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"ragflow-backup {package_version('ragflow-backup')}")


STATUS_STYLE = {"ok": "[green]ok[/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]", "off": "[dim]off[/dim]"}


@app.command()
def doctor() -> None:
    """Pre-flight checks: every configured service and the storage root; exits 1 if any fails."""
    from agent.doctor import run_checks

    checks = run_checks(state.settings())
    table = Table(title="ragflow-backup doctor")
    for column in ("check", "status", "found", "how to fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.name, STATUS_STYLE[check.status], check.detail, check.fix)
    console.print(table)
    failed = [check.name for check in checks if check.status == "fail"]
    if failed:
        errors.print(f"[red]{len(failed)} check(s) failed:[/red] {', '.join(failed)}")
        raise typer.Exit(1)


def main() -> None:
    app()
