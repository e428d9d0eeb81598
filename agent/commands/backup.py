"""backup, verify, list and prune."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent import ragflow_version
from agent.commands.common import console, fail, human_age, human_bytes, state, styled
from agent.manifest import Manifest
from agent.points import Point, Storage
from agent.runs import MODULES, enabled_components, notify_outcome, run_component


def _components(settings, requested: list[str] | None) -> list[str]:
    available = enabled_components(settings)
    if not requested:
        if not available:
            fail("no component is enabled in the config")
        return available
    unknown = [name for name in requested if name not in MODULES]
    if unknown:
        fail(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}", code=2)
    disabled = [name for name in requested if name not in available]
    if disabled:
        fail(f"component(s) {', '.join(disabled)} disabled in the config (enable them, or set ragflow_dir for config)", code=2)
    return requested


def _notify_failure(settings, message: str) -> None:
    """Tell the operator even when the storage root cannot be written (the send happens before the
    notifier's own state file is saved there)."""
    from agent.notify import Notifier

    try:
        Notifier(settings.notify, settings.storage_root / "state" / "notify.json").failure(
            "backup", "ragflow-backup: cannot create a backup point", message)
    except OSError:
        pass


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=True)


def _summary(point: Point, manifest: Manifest) -> None:
    table = Table(title=f"backup {point.ref}: {manifest.status}")
    for column in ("component", "status", "seconds", "size", "counted", "error"):
        table.add_column(column, overflow="fold")
    for name in manifest.requested:
        record = manifest.components.get(name)
        if record is None:
            table.add_row(name, styled("running"), "", "", "", "")
            continue
        size = sum(a.bytes for a in record.artifacts)
        counted = f"{sum(record.counts.values())} in {len(record.counts)}" if record.counts else ""
        table.add_row(name, styled(record.status), f"{record.seconds:.1f}", human_bytes(size), counted, record.error or "")
    console.print(table)


def backup(
    component: Annotated[Optional[list[str]], typer.Option("--component", "-C", help="Only this component (repeatable).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run here, without a worker.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Queue for the workers and wait for the result.")] = False,
    timeout: Annotated[int, typer.Option(help="Seconds --wait waits before giving up.")] = 6 * 3600,
) -> None:
    """Take a backup point of every enabled component (or those named); exit 1 unless it is complete."""
    settings = state.settings()
    names = _components(settings, component)
    storage = Storage(settings.storage_root)
    try:
        point = storage.new_point(names, ragflow=ragflow_version.detect(settings))
    except OSError as exc:
        message = (f"cannot create a point under {settings.storage_root}: {exc.strerror} (check the folder's "
                   "owner, mode, free space and that it is mounted read-write)")
        _notify_failure(settings, message)
        fail(message)
    if local:
        with _progress() as progress:
            task = progress.add_task(f"backing up into {point.ref}", total=len(names))
            for name in names:
                progress.update(task, description=f"{name} → {point.ref}")
                run_component(settings, point, name)
                progress.advance(task)
        notify_outcome(settings, point)  # the workers notify for queued runs; here, we do
    else:
        from actors.tasks import backup_component

        for name in names:
            backup_component.send(point.ref, name)
        if not wait:
            console.print(f"queued {', '.join(names)} into {point.ref}; follow with `ragflow-backup list`")
            return
        deadline = time.monotonic() + timeout
        with _progress() as progress:
            task = progress.add_task(f"waiting for the workers: {point.ref}", total=len(names))
            while (manifest := point.manifest()).status == "running":
                progress.update(task, completed=len(manifest.components))
                if time.monotonic() > deadline:
                    fail(f"{point.ref} is still running after {timeout}s; is a worker running (`ragflow-backup worker`)?")
                time.sleep(0.5)
    manifest = point.manifest()
    _summary(point, manifest)
    if manifest.status != "complete":
        raise typer.Exit(1)


def verify(
    point: Annotated[Optional[str], typer.Argument(help="daily/2026-11-24, 2026-11-24 or a folder; default: the newest point.")] = None,
    identity: Annotated[Optional[Path], typer.Option(help="age identity file: also decrypt encrypted artifacts and "
                                                          "check their content.")] = None,
) -> None:
    """Re-check a point's artifacts against its manifest; exit 1 on any problem."""
    from agent.verify import verify_point

    settings = state.settings()
    storage = Storage(settings.storage_root)
    from agent.verify import newest_point

    try:
        target = storage.point(point) if point else newest_point(storage)
    except LookupError as exc:
        fail(str(exc))
    if target is None:
        fail(f"no backup point under {storage.root} yet")
    from agent.component import PermanentError
    from agent.encryption import is_encrypted

    try:
        report = verify_point(settings, target, identity)
    except PermanentError as exc:
        fail(str(exc))
    table = Table(title=f"verify {report.point} ({report.status})")
    for column in ("component", "result", "seconds", "problems"):
        table.add_column(column, overflow="fold")
    for check in report.components:
        table.add_row(check.component, styled("ok" if check.ok else "fail"), f"{check.seconds:.2f}", "\n".join(check.problems))
    console.print(table)
    if identity is None and report.status != "unreadable" and is_encrypted(target):
        console.print("encrypted point: ciphertexts checked (size, SHA-256); pass --identity FILE to decrypt and "
                      "check the content too")
    console.print(f"verified in {report.seconds:.2f}s: " + ("[green]all sound[/green]" if report.ok else "[red]problems found[/red]"))
    if not report.ok:
        raise typer.Exit(1)


def list_points() -> None:
    """Show the points (daily, weekly, monthly) with status, size and age."""
    settings = state.settings()
    storage = Storage(settings.storage_root)
    table = Table(title=f"backup points in {storage.root}")
    for column in ("tier", "point", "status", "size", "age", "RAGFlow", "components"):
        table.add_column(column, overflow="fold", no_wrap=column == "RAGFlow")  # a tag reads whole or not at all
    seen: set[tuple[int, int]] = set()
    for point in storage.points():
        size = human_bytes(point.du_bytes(seen))  # hard-linked promotions count once
        try:
            manifest = point.manifest()
        except Exception as exc:  # noqa: BLE001 - edited or truncated by hand: say so, list the rest
            table.add_row(point.tier, point.name, styled("fail"), size, "", "", f"manifest.json unreadable ({type(exc).__name__})")
            continue
        parts = ", ".join(f"{name}:{rec.status}" for name, rec in manifest.components.items())
        ragflow = escape(manifest.ragflow.label()) if manifest.ragflow else ""  # read back: untrusted
        table.add_row(point.tier, point.name, styled(point.status()), size, human_age(manifest.created_at), ragflow,
                      parts)
    console.print(table)


def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go, and why.")] = False,
) -> None:
    """Apply the retention policy (daily/weekly/monthly); never deletes the newest complete point."""
    from agent.retention import prune as apply_retention

    settings = state.settings()
    decisions = apply_retention(Storage(settings.storage_root), settings, dry_run=dry_run)
    table = Table(title="prune (dry run)" if dry_run else "prune")
    for column in ("point", "decision", "why"):
        table.add_column(column, overflow="fold")
    for decision in decisions:
        table.add_row(decision.ref, "delete" if decision.delete else "keep", decision.reason)
    console.print(table)
