"""`notify test`: one test message to every configured target, each result shown; exit 1 if any failed."""
from __future__ import annotations

import typer
from rich.table import Table

from agent.commands.common import console, errors, state, styled
from core.notify import Notifier
from core.ping import masked, ping

notify_app = typer.Typer(add_completion=False, help="Notifications: send a test message to every target.")

TITLE = "ragflow-backup: test message"
BODY = "This is a test from `ragflow-backup notify test`: this target receives the backup agent's alerts."


@notify_app.callback()
def notify_main() -> None:
    """Notifications (notify.urls, notify.desktop) and the dead-man's-switch ping (notify.ping_url)."""


@notify_app.command("test")
def send_test() -> None:
    """Send a test message to every Apprise URL and the desktop, and ping notify.ping_url (as a success)."""
    settings = state.settings()
    notifier = Notifier(settings.notify, settings.layout.notify_state)
    results = notifier.send_each("warning", TITLE, BODY)
    if settings.notify.ping_url is not None:
        url = settings.notify.ping_url.get_secret_value()
        results.append((f"ping URL ({masked(url)})", ping(settings.notify, "success", BODY)))
    if not results:
        errors.print("no notification target configured: set notify.urls (Apprise URLs), notify.desktop or "
                     "notify.ping_url in the config", highlight=False)
        raise typer.Exit(1)
    table = Table(title="notify test")
    for column in ("target", "result", "reason"):
        table.add_column(column, overflow="fold")
    for target, error in results:
        table.add_row(target, styled("ok" if error is None else "failed"), error or "")
    console.print(table)
    failed = [target for target, error in results if error is not None]
    if failed:
        errors.print(f"[red]{len(failed)} target(s) failed:[/red] {', '.join(failed)}", highlight=False)
        raise typer.Exit(1)
