"""`upgrade prepare | rollback | status`: upgrade RAGFlow with a way back.

prepare: the agent must be healthy (a worker answering, no component whose last backup failed), the MinIO mirror
is brought up to date, then a complete point of every enabled component is taken here and pinned as
`pre-upgrade-<RAGFlow tag>-<UTC time>` (its manifest records the RAGFlow image and the schema's stamp, see
core/ragflow_version.py), and the exact command of the way back is printed.

rollback: that point restored whole and exactly through the ordinary restore (actors/actions/restore.py: the MinIO
mirror brought up to date and a safety point of the upgraded state first, so `restore --rollback` undoes the
rollback; Redis keys, RAGFlow's indices and buckets the point lacks are removed), objects as at the point; then each
component's recount and `.env`'s bytes against the manifest in a table, and the containers to recreate.
"""
from __future__ import annotations

import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import redis
import typer
from rich.markup import escape
from rich.prompt import Confirm
from rich.table import Table

from actors.actions.restore import RestoreFailed, execute, make_plan
from actors.actions.retention import pin_of
from actors.components import enabled_components
from actors.minio.mirror import reconcile
from agent.commands.backup import backup_here
from agent.commands.common import console, fail, state, styled
from agent.health import collect
from agent.upgrade_report import PREFIX, env_sha256, prepared_points, result_rows, services_to_recreate
from core import queues, ragflow_version
from core.component import PermanentError
from core.mirror_status import record_reconcile
from core.points import Point, Storage

upgrade_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Upgrade RAGFlow with a way back: `prepare` before, `rollback` if it went wrong.")


def health_problems(settings, storage: Storage) -> list[str]:
    """What `status` would flag that makes a way back doubtful: no worker answering (the agent is down, so no
    backups after the upgrade either), a component whose newest backup failed."""
    problems = []
    try:
        client = redis.Redis.from_url(settings.broker.url.get_secret_value(), socket_timeout=10,
                                      socket_connect_timeout=10)
        if not queues.live_workers(client, settings.broker.namespace, settings.broker.heartbeat_timeout_ms):
            problems.append(f"no worker answers in broker namespace {settings.broker.namespace!r}: start the agent "
                            "(`ragflow-backup run`, or its compose service)")
    except (redis.RedisError, ValueError) as exc:  # never the URL: it holds the password
        problems.append(f"the broker's Redis cannot be asked ({type(exc).__name__}): check broker.url")
    report = collect(settings, storage)
    for item in report.components:
        if item.component not in enabled_components(settings) or item.last_failure_at is None:
            continue
        if item.last_success_at is None or item.last_failure_at > item.last_success_at:
            problems.append(f"{item.component}: the newest backup failed ({item.last_failure}); "
                            "fix it first (`ragflow-backup doctor`)")
    return problems


def _way_back(point: Point) -> str:
    config = f"--config {shlex.quote(str(state.config_path))} " if state.config_path else ""
    return f"ragflow-backup {config}upgrade rollback --point {point.ref}"


def mirror_up_to_date(settings, otherwise: str) -> None:
    """Reconcile the MinIO mirror now (a full listing of the buckets), or fail saying `otherwise`."""
    console.print("bringing the MinIO mirror up to date (a full listing of the buckets)")
    report = reconcile(settings)
    record_reconcile(settings, report, None)
    if not report.complete:
        fail(f"the MinIO mirror could not be brought up to date ({'; '.join(report.errors[:3])}), so {otherwise}")


@upgrade_app.command()
def prepare(
    ignore_health: Annotated[bool, typer.Option("--ignore-health", help="Take the point even if the agent is "
                                                                        "not healthy (said, not hidden).")] = False,
) -> None:
    """Check the agent, take a complete point of every component pinned as pre-upgrade-..., print the way back."""
    settings = state.settings()
    storage = Storage(settings.storage_root)
    problems = health_problems(settings, storage)
    for problem in problems:
        console.print(f"{styled('fail' if not ignore_health else 'warn')} {escape(problem)}", soft_wrap=True)
    if problems and not ignore_health:
        fail("the agent is not healthy, so nothing was taken: fix the above (or pass --ignore-health)")
    if settings.minio.enabled:  # objects come back from the mirror as at the point: it must hold them all now
        mirror_up_to_date(settings, "nothing was taken: objects could not be put back as they are now")
    version = ragflow_version.detect(settings)
    tag = re.sub(r"[^A-Za-z0-9._+-]", "-", version.label() if version.effective_image else "unknown")[:40]
    pin = f"{PREFIX}{tag}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    point = backup_here(settings, storage, enabled_components(settings), pin)
    console.print(f"RAGFlow now: {escape(ragflow_version.describe(point.manifest().ragflow))}", soft_wrap=True)
    console.print(f"[bold]prepared:[/bold] {point.ref}, pinned as {pin}. Upgrade RAGFlow now (RAGFLOW_IMAGE in "
                  ".env, then `docker compose -f docker-compose.yml up -d`). If it goes wrong, the way back is:",
                  soft_wrap=True, highlight=False)
    console.print(f"  {_way_back(point)}", soft_wrap=True, highlight=False, markup=False)


@upgrade_app.command()
def status() -> None:
    """The points `upgrade prepare` took (newest first) and the way back."""
    settings = state.settings()
    found = prepared_points(Storage(settings.storage_root))
    if not found:
        console.print("no point prepared for an upgrade: run `ragflow-backup upgrade prepare` before upgrading")
        return
    table = Table(title="points prepared for an upgrade")
    for column in ("point", "pin", "taken", "RAGFlow"):
        table.add_column(column, overflow="fold", no_wrap=column in ("point", "pin"))  # copied whole, so shown whole
    for created, point, pin in found:
        table.add_row(point.ref, escape(pin), created.isoformat(timespec="seconds"),
                      escape(ragflow_version.describe(point.manifest().ragflow)))
    console.print(table)
    console.print(f"way back: {_way_back(found[0][1])}", soft_wrap=True, highlight=False, markup=False)


def _chosen(storage: Storage, ref: str | None) -> Point:
    if ref:
        try:
            return storage.point(ref)
        except LookupError as exc:
            fail(str(exc), code=2)
    found = prepared_points(storage)
    if not found:
        fail("no point prepared for an upgrade (pinned pre-upgrade-...): name one with --point", code=2)
    return found[0][1]


@upgrade_app.command()
def rollback(
    point: Annotated[Optional[str], typer.Option(help="The point to go back to (default: the newest pre-upgrade one).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; required without a terminal.")] = False,
    identity: Annotated[Optional[Path], typer.Option(help="age identity file, when points are encrypted.")] = None,
) -> None:
    """Put everything back as at the prepared point (MySQL, search, Redis, config with .env, MinIO), check it."""
    settings = state.settings()
    storage = Storage(settings.storage_root)
    target = _chosen(storage, point)
    interactive = sys.stdin.isatty() and not yes
    if not interactive and not yes:
        fail("refusing to roll back without a terminal to confirm on: pass --yes", code=2)
    try:
        plan = make_plan(settings, target.ref)
    except (PermanentError, LookupError) as exc:
        fail(str(exc), code=2)
    plan.exact = True  # what the upgrade added (keys, indices, buckets) goes too; the safety point keeps it
    manifest = target.manifest()
    console.print(f"[bold]rollback to {target.ref}[/bold] ({escape(pin_of(target) or 'not pinned')})", highlight=False)
    console.print(f"  RAGFlow then: {escape(ragflow_version.describe(manifest.ragflow))}", soft_wrap=True)
    console.print(f"  RAGFlow now:  {escape(ragflow_version.describe(ragflow_version.detect(settings)))}",
                  soft_wrap=True)
    for line in plan.lines():
        console.print(f"  {escape(line)}", soft_wrap=True)
    console.print("  stop RAGFlow's app container first (`docker compose stop ragflow-cpu`, or -gpu): it must not "
                  "write while its data is put back", soft_wrap=True)
    if interactive and not Confirm.ask("Roll back now?"):
        fail("not confirmed; nothing was changed")
    if "minio" in plan.components:  # the upgraded objects must be in the mirror for `restore --rollback`
        mirror_up_to_date(settings, "nothing was changed: the objects written since the point would be lost")
    before = settings.ragflow_env()
    try:
        report = execute(settings, plan, identity)
    except (RestoreFailed, PermanentError) as exc:
        fail(str(exc))
    rows = result_rows(manifest, report["results"], settings.ragflow_dir, ragflow_version.schema_shape(settings))
    table = Table(title=f"rollback to {target.ref}: checked against its manifest")
    for column in ("component", "checked", "expected", "found", "result"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.component, row.what, escape(row.expected), escape(row.found), styled("ok" if row.ok else "fail"))
    console.print(table)
    safety = report["safety"].ref if report["safety"] else "-"
    console.print(f"rolled back in {report['seconds']:.1f}s (the upgraded state is kept in safety point {safety}; "
                  "`ragflow-backup restore --rollback` goes forward again)", soft_wrap=True, highlight=False)
    config = report["results"].get("config")
    services = services_to_recreate(before, settings.ragflow_env(), list(getattr(config, "written", [])))
    if services:
        console.print(f"settings changed for: {', '.join(services)}. Recreate them (compose recreates exactly the "
                      "containers whose image or settings differ):", soft_wrap=True, highlight=False)
        console.print(f"  cd {shlex.quote(str(settings.ragflow_dir))} && docker compose -f docker-compose.yml up -d",
                      soft_wrap=True, highlight=False, markup=False)
    else:
        console.print("no container settings changed: start RAGFlow's app container again (`docker compose start "
                      "ragflow-cpu`, or -gpu)", soft_wrap=True, highlight=False)
    if settings.ragflow_dir and env_sha256(settings.ragflow_dir) is None:
        console.print(f"{styled('warn')} no .env in {settings.ragflow_dir} after the rollback", soft_wrap=True)
    if not all(row.ok for row in rows):
        fail("the result differs from the manifest (see the table): do not start RAGFlow on it; the upgraded state "
             f"is in {safety}")
