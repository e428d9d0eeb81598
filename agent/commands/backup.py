"""backup, verify, list and prune."""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import redis
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from actors.actions.retention import UNREADABLE_PIN, pin_of
from actors.actions.retention import prune as apply_retention
from actors.actions.runs import backup_run, notify_outcome, run_component, save_outcome
from actors.actions.verify import newest_point, verify_point
from actors.broker import configure
from actors.components import IN_POINTS, enabled_components
from actors.tasks import backup_component
from agent.commands.common import console, fail, human_age, human_bytes, state, styled
from agent.commands.json_views import JsonOption, broken_point_row, emit, point_row, verify_view
from agent.commands.pins import pin_point
from core import queues, ragflow_version
from core.component import PermanentError
from core.encryption import is_encrypted
from core.locks import Busy
from core.manifest import ComponentRecord, Manifest
from core.notify import Notifier
from core.ping import ping
from core.points import Point, Storage, pin_name
from core.safe_paths import UnsafePath


def _components(settings, requested: list[str] | None) -> list[str]:
    available = enabled_components(settings)
    if not requested:
        if not available:
            fail("no component is enabled in the config")
        return available
    unknown = [name for name in requested if name not in IN_POINTS]
    if unknown:
        fail(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(IN_POINTS)}", code=2)
    disabled = [name for name in requested if name not in available]
    if disabled:
        fail(f"component(s) {', '.join(disabled)} disabled in the config (enable them, or set ragflow_dir for config)", code=2)
    return requested


def _notify_failure(settings, message: str, title: str = "ragflow-backup: cannot create a backup point") -> None:
    """Tell the operator even when the storage root cannot be written (the send happens before the
    notifier's own state file is saved there)."""

    ping(settings.notify, "fail", title)
    try:
        Notifier(settings.notify, settings.layout.notify_state).failure("backup", title, message)
    except OSError:
        pass


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=True)


def _summary(point: Point, manifest: Manifest, unsaved: dict[str, ComponentRecord] | None = None) -> None:
    status = manifest.status if manifest.status != "running" or not unsaved else "interrupted"
    table = Table(title=f"backup {point.ref}: {status}")
    for column in ("component", "status", "seconds", "size", "counted", "error"):
        table.add_column(column, overflow="fold")
    for name in manifest.requested:
        record = manifest.components.get(name) or (unsaved or {}).get(name)
        if record is None:
            table.add_row(name, styled("running"), "", "", "", "")
            continue
        size = human_bytes(record.added_bytes) + (f" + base {escape(record.base_of)}" if record.base_of else "")
        counted = f"{sum(record.counts.values())} in {len(record.counts)}" if record.counts else ""
        table.add_row(name, styled(record.status), f"{record.seconds:.1f}", size, counted, record.error or "")
    console.print(table)


def _cannot_create(settings, exc: OSError) -> None:
    message = (f"cannot create a point under {settings.storage_root}: {exc.strerror} (check the folder's "
               "owner, mode, free space and that it is mounted read-write)")
    _notify_failure(settings, message)
    fail(message)


def _waiting_for(why: str) -> None:
    console.print(f"{why}: waiting for it to end before taking a point (Ctrl-C gives up; nothing has been "
                  "created yet)")


def _finish_here(settings, point: Point, records: dict[str, ComponentRecord]) -> dict[str, ComponentRecord]:
    """After a local run: outcomes the storage root could not take (full) are tried once more, after removing
    what no saved record claims (this run alone writes this point); the history line is written if it could
    not be. Returns the outcomes still unsaved (the point then reads as interrupted)."""
    if point.manifest().status == "running":
        claimed = {name for record in point.manifest().components.values() for artifact in record.artifacts
                   for name in (artifact.name, artifact.encrypted.name if artifact.encrypted else artifact.name)}
        point.remove_unclaimed_artifacts(claimed)
        for name, record in records.items():
            if name not in point.manifest().components and record is not None:
                save_outcome(settings, point, record)
    manifest = point.manifest()
    unsaved = {name: record for name, record in records.items()
               if record is not None and name not in manifest.components}
    point.log_history(manifest, "interrupted" if manifest.status == "running" else None)
    return unsaved


def backup_here(settings, storage: Storage, names: list[str], pin: str | None = None) -> Point:
    """Take a point here (no worker); pinned as `pin` once complete. Exit 1 unless it is complete."""
    with ExitStack() as held:
        try:
            run = held.enter_context(backup_run(storage, on_busy=_waiting_for))
            point = storage.new_point(names, ragflow=ragflow_version.detect(settings))
            run.note(point.ref)  # if this run cannot finish the point, the next one will
        except OSError as exc:
            _cannot_create(settings, exc)
        ping(settings.notify, "start", point.ref)
        records: dict[str, ComponentRecord] = {}
        with _progress() as progress:
            task = progress.add_task(f"backing up into {point.ref}", total=len(names))
            for name in names:
                progress.update(task, description=f"{name} → {point.ref}")
                records[name] = run_component(settings, point, name)
                progress.advance(task)
        unsaved = _finish_here(settings, point, records)
    if unsaved:  # the manifest could not say it: the notification and the exit code do
        body = "\n".join(f"{name}: {record.error}" for name, record in unsaved.items())
        _notify_failure(settings, f"{point.ref} could not be finished and reads as interrupted:\n{body}",
                        f"ragflow-backup: {point.ref} is interrupted (storage)")
    else:
        try:
            notify_outcome(settings, point)  # the workers notify for queued runs; here, we do
        except OSError:
            pass  # the notifier sends before it saves its state under the storage root
    manifest = point.manifest()
    _summary(point, manifest, unsaved)
    if manifest.status != "complete":
        if pin:
            console.print(f"{point.ref} is not pinned: it is not complete", highlight=False)
        raise typer.Exit(1)
    if pin:
        pin_point(point, pin)
        console.print(f"pinned {point.ref} as {pin}: retention keeps it", highlight=False)
    return point


def _broker_client(settings):

    try:
        return redis.Redis.from_url(settings.broker.url.get_secret_value(), socket_timeout=10, socket_connect_timeout=10)
    except ValueError as exc:  # never echo the URL: it holds the password
        fail(f"broker.url in the config is not a Redis URL (redis://:PASSWORD@host:port/db): {type(exc).__name__}")


def _live_workers(settings, client) -> list[str]:


    try:
        return queues.live_workers(client, settings.broker.namespace, settings.broker.heartbeat_timeout_ms)
    except redis.RedisError as exc:
        fail(f"cannot reach the broker's Redis ({type(exc).__name__}: {exc}); check broker.url in the config and "
             "that Redis is running, or back up here with `ragflow-backup backup --local`")


def _no_worker(settings) -> str:
    seconds = settings.broker.heartbeat_timeout_ms // 1000
    return (f"no worker is consuming the queue (no heartbeat in broker namespace {settings.broker.namespace!r} for "
            f"{seconds}s): start one with `ragflow-backup --config CONFIG worker` (or `run`, agent and workers in "
            "one process; in Docker the agent's compose service), or back up here with `ragflow-backup backup --local`")


def _queue(settings, storage: Storage, names: list[str], wait: bool, timeout: int, pin: str | None = None) -> None:
    broker = configure(settings)
    client = _broker_client(settings)
    workers = _live_workers(settings, client)  # before we send anything: sending heart-beats too
    if not workers and wait:
        fail(f"{_no_worker(settings)}; nothing was queued")
    try:
        with backup_run(storage):  # a local run in progress is taking the point this one would
            point = storage.new_point(names, ragflow=ragflow_version.detect(settings))
    except Busy as exc:
        fail(f"{exc}: it is taking a point now; nothing was queued")
    except OSError as exc:
        _cannot_create(settings, exc)
    ping(settings.notify, "start", point.ref)
    for name in names:
        backup_component.send(point.ref, name)
    if not wait:
        console.print(f"queued {', '.join(names)} into {point.ref}; follow with `ragflow-backup list`")
        if not workers:
            console.print(f"[yellow]warning:[/yellow] {_no_worker(settings)}; the point waits for one")
        return
    deadline = time.monotonic() + timeout
    ours = broker.broker_id
    warned = False
    said: set[str] = set()
    console.print(f"queued {', '.join(names)} into {point.ref}; {len(workers)} worker(s) heard from; waiting")
    with _progress() as progress:
        task = progress.add_task(f"waiting for the workers: {point.ref}", total=len(names))
        while (manifest := point.manifest()).status == "running":
            alive = [w for w in _live_workers(settings, client) if w != ours]
            _say_finished(manifest, said)
            done = ", ".join(f"{n} {r.status}" for n, r in manifest.components.items()) or "none yet"
            progress.update(task, completed=len(manifest.components),
                            description=f"{point.ref}: {len(alive)} worker(s) alive; done: {done}")
            if not alive and not warned:
                console.print(f"[yellow]warning:[/yellow] {_no_worker(settings)}; still waiting (up to {timeout}s)")
            warned = not alive
            if time.monotonic() > deadline:
                fail(f"{point.ref} is still running after {timeout}s; is a worker running (`ragflow-backup worker`)?")
            time.sleep(0.5)
    manifest = point.manifest()
    _say_finished(manifest, said)
    _summary(point, manifest)
    if manifest.status != "complete":
        if pin:
            console.print(f"{point.ref} is not pinned: it is not complete", highlight=False)
        raise typer.Exit(1)
    if pin:
        pin_point(point, pin)
        console.print(f"pinned {point.ref} as {pin}: retention keeps it", highlight=False)


def _say_finished(manifest: Manifest, said: set[str]) -> None:
    """A line per component as it finishes, so that waiting shows progress even in a log (no terminal)."""
    for name, record in manifest.components.items():
        if name not in said:
            said.add(name)
            console.print(f"{name}: {record.status} in {record.seconds:.1f}s ({len(said)}/{len(manifest.requested)} "
                          "done)", highlight=False)


def backup(
    component: Annotated[Optional[list[str]], typer.Option("--component", "-C", help="Only this component (repeatable).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Run here, without a worker.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Queue for the workers and wait for the result.")] = False,
    timeout: Annotated[int, typer.Option(help="Seconds --wait waits before giving up.")] = 6 * 3600,
    pin: Annotated[Optional[str], typer.Option("--pin", help="Pin the point as NAME once complete: retention never "
                                                             "deletes it (with --local or --wait).")] = None,
) -> None:
    """Take a backup point of every enabled component (or those named); exit 1 unless it is complete.

    One backup run at a time per storage root: `--local` waits for a run in progress (saying so); a queued
    run is refused while a local one is taking its point."""
    settings = state.settings()
    names = _components(settings, component)
    if pin is not None:
        try:
            pin_name(pin)
        except ValueError as exc:
            fail(str(exc), code=2)
        if not (local or wait):
            fail("--pin pins the point once it is complete, so it needs --local or --wait (or pin it later with "
                 "`ragflow-backup pin POINT NAME`)", code=2)
    storage = Storage(settings.storage_root)
    if local:
        backup_here(settings, storage, names, pin)
    else:
        _queue(settings, storage, names, wait, timeout, pin)


def verify(
    point: Annotated[Optional[str], typer.Argument(help="daily/2026-11-24, 2026-11-24 or a folder; default: the newest point.")] = None,
    identity: Annotated[Optional[Path], typer.Option(help="age identity file: also decrypt encrypted artifacts and "
                                                          "check their content.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-check a point's artifacts against its manifest; exit 1 on any problem."""

    settings = state.settings()
    storage = Storage(settings.storage_root)

    try:
        target = storage.point(point) if point else newest_point(storage)
    except LookupError as exc:
        fail(str(exc))
    if target is None:
        fail(f"no backup point under {storage.root} yet")

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
    ciphertexts_only = identity is None and report.status != "unreadable" and is_encrypted(target)
    if as_json:
        emit("verify", verify_view(report, ciphertexts_only))
    if ciphertexts_only:
        console.print("encrypted point: ciphertexts checked (size, SHA-256); pass --identity FILE to decrypt and "
                      "check the content too")
    console.print(f"verified in {report.seconds:.2f}s: " + ("[green]all sound[/green]" if report.ok else "[red]problems found[/red]"))
    if not report.ok:
        raise typer.Exit(1)


def _manifest_or_error(point: Point) -> Manifest | Exception:
    try:
        return point.manifest()
    except Exception as exc:  # noqa: BLE001 - shown by `list`, which goes on with the rest
        return exc


def _oldest_first(item: tuple[Point, Manifest | Exception]) -> tuple[bool, float]:
    manifest = item[1]
    if isinstance(manifest, Exception):
        return True, 0.0
    return False, manifest.created_at.timestamp()


def list_points(as_json: JsonOption = False) -> None:
    """Show the points (daily, weekly, monthly) with status, size and age."""
    rows: list[dict] = []
    settings = state.settings()
    storage = Storage(settings.storage_root)
    table = Table(title=f"backup points in {storage.root}")
    for column in ("tier", "point", "status", "size", "age", "RAGFlow", "pin", "components"):
        table.add_column(column, overflow="fold", no_wrap=column == "RAGFlow")  # a tag reads whole or not at all
    points = [(point, _manifest_or_error(point)) for point in storage.points()]
    # Oldest first, whatever the tier: a file hard-linked into several points (a promotion, a change point's base)
    # counts once, with the oldest point that holds it, so a change point shows what it adds on disk.
    seen: set[tuple[int, int]] = set()
    sizes = {point.folder: point.du_bytes(seen) for point, manifest in sorted(points, key=_oldest_first)}
    for point, manifest in points:
        size_bytes = sizes[point.folder]
        size = human_bytes(size_bytes)
        if isinstance(manifest, Exception):  # edited or truncated by hand: say so, list the rest
            exc = manifest
            why = str(exc) if isinstance(exc, UnsafePath) else f"manifest.json unreadable ({type(exc).__name__})"
            table.add_row(point.tier, point.name, styled("fail"), size, "", "", "", escape(why))
            rows.append({**broken_point_row(point, size_bytes, why), "pin": None})
            continue
        pin = pin_of(point)  # read back: untrusted, printed escaped; why it is unreadable: `prune --dry-run`
        rows.append({**point_row(point, manifest, size_bytes), "pin": pin})
        parts = ", ".join(f"{name}:{rec.status}" + (f" (base {escape(rec.base_of)})" if rec.base_of else "")
                          for name, rec in manifest.components.items())
        ragflow = escape(manifest.ragflow.label()) if manifest.ragflow else ""  # read back: untrusted
        table.add_row(point.tier, point.name, styled(point.status()), size, human_age(manifest.created_at), ragflow,
                      escape(UNREADABLE_PIN if pin and pin.startswith(UNREADABLE_PIN) else pin or ""), parts)
    for path, problem in storage.unsafe_entries():  # planted links and the like: shown, never used
        table.add_row("", escape(str(path)), styled("fail") + " unsafe", "", "", "", "", escape(f"ignored: {problem}"))
    console.print(table)
    if as_json:
        emit("list", {"storage_root": str(storage.root), "points": rows,
                      "unsafe": [{"path": str(path), "problem": problem} for path, problem in storage.unsafe_entries()]})


def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go, and why.")] = False,
) -> None:
    """Apply the retention policy (daily/weekly/monthly); never deletes the newest complete point."""


    settings = state.settings()
    try:
        decisions = apply_retention(Storage(settings.storage_root), settings, dry_run=dry_run)
    except PermanentError as exc:  # e.g. the locks folder replaced by a symlink
        fail(str(exc))
    table = Table(title="prune (dry run)" if dry_run else "prune")
    for column in ("point", "decision", "why"):
        table.add_column(column, overflow="fold")
    for decision in decisions:
        table.add_row(decision.ref, "delete" if decision.delete else "keep", decision.reason)
    console.print(table)
