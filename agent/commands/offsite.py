"""`offsite`: the restic repository holding the second copy (status, init, copy, check, snapshots, forget)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from actors.actions.offsite import OffsiteError, OffsitePermanent, Restic, copy_mirror, copy_point, search_repo_skipped
from actors.actions.offsite import check as offsite_check
from actors.actions.offsite import forget as offsite_forget
from actors.actions.offsite import status as offsite_status
from actors.actions.restore import newest_complete
from agent.commands.common import console, fail, human_age, human_bytes, state, styled
from agent.commands.json_views import JsonOption, emit, offsite_status_view
from core.points import Storage

offsite_app = typer.Typer(add_completion=False, help="The offsite copy (a restic repository): status, copy, check, snapshots.")


def _call(job: Callable[[], Any]) -> Any:
    """Run an offsite job; its errors (wrong password, no repository, a lock) become one clear line."""

    try:
        return job()
    except (OffsiteError, OffsitePermanent) as exc:
        fail(str(exc))


def _settings():
    settings = state.settings()
    if not settings.offsite.repository:
        fail("no offsite repository configured: set offsite.repository (and offsite.password_file) in the config", code=2)
    return settings


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@offsite_app.command()
def status(as_json: JsonOption = False) -> None:
    """Last copy per component, its lag behind the newest local point, and the repository's size."""

    settings = _settings()
    rows, stats, count = _call(lambda: offsite_status(settings))
    table = Table(title=f"offsite repository {settings.offsite.repository}")
    for column in ("component", "last copy", "age", "point", "lag"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.component, row.last_copy.isoformat(timespec="seconds") if row.last_copy else "never",
                      human_age(row.last_copy) if row.last_copy else "-", row.point or "-", _lag(row.lag_seconds))
    console.print(table)
    console.print(f"repository size: {human_bytes(stats.get('total_size', 0))} in {count} snapshot(s)")
    if as_json:
        emit("offsite status", offsite_status_view(settings.offsite.repository, rows, stats, count))
    skipped = search_repo_skipped(settings) if settings.search.enabled else None
    if skipped:
        console.print(f"{styled('warn')} the search snapshot repository is not copied offsite: {escape(skipped)}",
                      soft_wrap=True)
    if not rows:
        fail("nothing has been copied offsite yet (`ragflow-backup offsite copy`)")


@offsite_app.command()
def init() -> None:
    """Create the repository if it does not exist (the password from offsite.password_file or the environment)."""

    settings = _settings()
    created = _call(lambda: Restic(settings).init())
    console.print(f"{'created' if created else 'found'} the offsite repository {settings.offsite.repository}")


@offsite_app.command()
def copy(
    point: Annotated[Optional[str], typer.Argument(help="daily/2026-11-24 (default: the newest complete point).")] = None,
    mirror: Annotated[bool, typer.Option("--mirror/--no-mirror", help="Also the MinIO mirror and config history.")] = True,
) -> None:
    """Send a complete point (and the MinIO mirror) to the offsite repository now."""

    settings = _settings()
    storage = Storage(settings.storage_root)
    try:
        chosen = storage.point(point) if point else newest_complete(storage)
    except LookupError as exc:
        fail(str(exc))
    if chosen is None:
        fail(f"no complete point under {storage.root} to copy")
    snapshot = _call(lambda: copy_point(settings, chosen))
    console.print(f"{chosen.ref}: " + (f"copied as snapshot {snapshot[:8]}" if snapshot else "already offsite"))
    if mirror:
        done = _call(lambda: copy_mirror(settings))
        console.print(f"mirror, config history, binlog archive and search snapshot repository: {len(done)} snapshot(s)")
        skipped = search_repo_skipped(settings) if settings.search.enabled else None
        if skipped:
            console.print(f"{styled('warn')} the search snapshot repository was not copied: {escape(skipped)}",
                          soft_wrap=True)


@offsite_app.command()
def check(
    read_data_subset: Annotated[bool, typer.Option("--read-data-subset", help="Also read and check a subset of the data "
                                                   "(offsite.read_data_subset).")] = False,
) -> None:
    """restic check of the repository's structure (and optionally a subset of its data); exit 1 on errors."""

    settings = _settings()
    out = _call(lambda: offsite_check(settings, read_data_subset))
    console.print(out.strip().splitlines()[-1] if out.strip() else "checked")


@offsite_app.command()
def snapshots() -> None:
    """The snapshots in the repository: points, mirror copies and config history."""

    settings = _settings()
    snaps = _call(lambda: Restic(settings).snapshots())
    table = Table(title=f"offsite snapshots in {settings.offsite.repository}")
    for column in ("id", "time", "kind", "point", "components", "host"):
        table.add_column(column, overflow="fold")
    for snap in snaps:
        table.add_row(snap.id[:8], snap.time.isoformat(timespec="seconds"), snap.kind, snap.point or "-",
                      ", ".join(snap.tags.get("component", [])), snap.hostname)
    console.print(table)


@offsite_app.command()
def forget() -> None:
    """Apply the offsite retention policy (default: the local 7/4/12) and prune the repository."""

    settings = _settings()
    _call(lambda: offsite_forget(settings))
    console.print("offsite retention applied")
