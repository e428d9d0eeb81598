"""What every command shares: consoles, the --config value, settings loading with readable errors."""
from __future__ import annotations

import copy
import logging
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from core.config import ConfigError, Settings, config_path, load_settings
from core.redact import redact, redact_logging
from core.runtime import use_config


class RedactedOutput:
    """sys.stdout or sys.stderr (looked up at each write: tests swap them) with secrets masked on the way out.
    Rich writes each print's rendered text at once, so a table cell or a traceback line is masked whole."""

    def __init__(self, name: str):
        self.name = name

    @property
    def stream(self):
        return getattr(sys, self.name)

    def write(self, text: str) -> int:
        return self.stream.write(redact(text))

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", None) or "utf-8"


# Every message and table of the commands goes through these two: masked like the logs (core/redact.py).
console = Console(file=RedactedOutput("stdout"))  # type: ignore[arg-type]
errors = Console(file=RedactedOutput("stderr"))  # type: ignore[arg-type]


class State:
    config_path: Path | None = None

    def settings(self) -> Settings:
        try:
            settings = load_settings(self.config_path)
        except ConfigError as exc:
            fail(str(exc), code=2)
        root = settings.storage_root
        if root.exists() and not root.is_dir():  # every command would fail on it later, with a traceback
            fail(f"storage_root {root} is not a folder: set storage_root in {config_path(self.config_path)} to the "
                 f"folder the backups go to", code=2)
        # Workers and actors started from here read the same file.
        use_config(config_path(self.config_path), settings)
        return settings


state = State()


def _config_after_subcommand(ctx: Any, param: Any, value: Path | None) -> None:
    if value is not None:
        state.config_path = Path(value).resolve()


def accept_config_anywhere(command: Any, root_option: Any) -> None:
    """Give a command (and, for a group, each of its subcommands) a copy of the root's -c/--config, so the
    option may come after the subcommand's name too: `ragflow-backup status -c FILE`, `queue show -c FILE`."""
    if not any("--config" in param.opts for param in command.params):
        option = copy.copy(root_option)
        option.expose_value = False  # the command's function never sees it: it sets `state.config_path`
        option.callback = _config_after_subcommand
        option.envvar = None  # the root option reads RAGFLOW_BACKUP_CONFIG already
        command.params.append(option)
    for sub in getattr(command, "commands", {}).values():
        accept_config_anywhere(sub, root_option)


def print_error(message: str) -> None:
    errors.print(f"[red]error:[/red] {redact(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    print_error(message)
    raise typer.Exit(code)


def setup_logging() -> None:
    """Log lines to stderr, with secrets masked (core.redact) by a filter on the handlers. A thread that dies
    is logged too (Python would print its traceback to stderr past the filter)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_logging()
    threading.excepthook = log_thread_death


def log_thread_death(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("ragflow_backup").error("thread %s stopped on an error", name,
                                              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


STATUS_STYLE = {
    "ok": "[green]ok[/green]", "complete": "[green]complete[/green]", "warn": "[yellow]warn[/yellow]",
    "partial": "[yellow]partial[/yellow]", "running": "[cyan]running[/cyan]", "interrupted": "[red]interrupted[/red]",
    "fail": "[red]FAIL[/red]", "failed": "[red]failed[/red]", "off": "[dim]off[/dim]",
}


def styled(status: str) -> str:
    return STATUS_STYLE.get(status, status)


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def human_age(when: datetime) -> str:
    seconds = (datetime.now(timezone.utc) - when).total_seconds()
    if seconds < 0:
        return "in the future"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
