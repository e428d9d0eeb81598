"""`move`: bring RAGFlow up on a new machine from its backups alone (the old storage root copied over, or
the offsite repository), in the one order that works:

1. RAGFlow's docker/ folder and .env first: the new data services must start with the passwords the
   data expects (and this config reads them from that .env: core/config.py);
2. the operator starts the data services; they are polled, naming those not up yet;
3. MySQL, search, MinIO and Redis, each checked against the point's counts by its own restore;
4. a report per component, and the time taken against the requirements' 30 minutes.

Each step is an ordinary restore (actors/actions/restore.py): a safety point in this machine's root,
rolled back on failure; the source is only read (core/source_root.py, actors/actions/offsite.py).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from actors.actions.drill import OBJECTIVE_SECONDS
from actors.actions.foreign import fetched_repository, register_source_repository
from actors.actions.offsite import OffsiteError, OffsitePermanent, fetched
from actors.actions.restore import ORDER, Plan, RestoreFailed, execute, make_plan
from agent.commands.common import console, fail, state, styled
from agent.commands.restore import clean_leftovers, interval_from_copy, parse_moment, show_mapping
from agent.restore_report import in_words
from core import clients
from core.component import PermanentError
from core.config import Settings
from core.encryption import decrypted
from core.points import Storage
from core.source_root import opened

DATA = ("mysql", "search", "minio", "redis")  # the services the operator starts (RAGFlow's docker-compose-base.yml)
POLL_SECONDS = 3.0
# Their service names in RAGFlow's docker-compose-base.yml (testbed/ragflow_docker/v0.27/).
COMPOSE_SERVICES = {"mysql": ("mysql",), "minio": ("minio",), "search": ("es01", "opensearch01"), "redis": ("redis",)}


def start_containers(settings: Settings, names: list[str]) -> list[str]:
    """Start the existing, stopped containers of these data services (found by their compose labels, in
    mysql.compose_project when set) through the Docker API (docker.host); the names of those started."""
    project = [f"com.docker.compose.project={settings.mysql.compose_project}"] if settings.mysql.compose_project else []
    started: list[str] = []
    try:
        client = clients.docker_client(settings.docker.host)
        for name in names:
            for service in COMPOSE_SERVICES[name]:
                labels = [*project, f"com.docker.compose.service={service}"]
                for container in client.containers.list(all=True, filters={"label": labels}):
                    if container.status != "running":
                        container.start()
                        started.append(container.name)
    except Exception as exc:  # noqa: BLE001 - docker's errors (imported lazily, as core/clients.py does): said
        raise PermanentError(f"starting the data services through the Docker API failed after {started or 'none'} "
                             f"({type(exc).__name__}: {str(exc)[:200]}): start them yourself (`docker compose -f "
                             "docker-compose-base.yml up -d`) and run the same `ragflow-backup move` again") from None
    return started


def _probes(settings: Settings) -> dict[str, Callable[[], Any]]:
    def mysql() -> None:
        clients.mysql_connection(settings.mysql, database="").close()

    return {"mysql": mysql, "minio": lambda: clients.minio_client(settings.minio).list_buckets(),
            "search": lambda: clients.search_server_version(clients.search_client(settings.search)),
            "redis": lambda: clients.redis_client(settings.redis).ping()}


def not_up(settings: Settings, names: list[str]) -> dict[str, str]:
    """The services of `names` that do not answer yet, each with why (the client's words, masked)."""
    probes, down = _probes(settings), {}
    for name in names:
        try:
            probes[name]()
        except Exception as exc:  # noqa: BLE001 - any failure means "not up yet"; said, then polled again
            down[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
    return down


def wait_for_services(settings: Settings, names: list[str], minutes: float) -> float:
    """Poll until every service of `names` answers; the seconds waited. Says which are not up, when that
    changes; gives up after `minutes`, naming them."""
    started, deadline, said = time.monotonic(), time.monotonic() + minutes * 60, None
    while True:
        down = not_up(settings, names)
        if not down:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise PermanentError(f"after {minutes:g} minutes these services are still not up: "
                                 + "; ".join(f"{n} ({why})" for n, why in down.items())
                                 + ". RAGFlow's docker/ folder is in place: start them, then run the same "
                                   "`ragflow-backup move` again")
        if sorted(down) != said:
            said = sorted(down)
            console.print(f"waiting for {', '.join(said)} to answer (checked every {POLL_SECONDS:g}s): "
                          + "; ".join(f"{n}: {escape(why)}" for n, why in down.items()), soft_wrap=True)
        time.sleep(POLL_SECONDS)


@contextmanager
def _source(settings: Settings, root: Path | None, point: str | None,
            at: datetime | None) -> Iterator[tuple[Storage | None, str | None, Path | None]]:
    """(where the points are, the point, the fetched copy of the search snapshot repository): another root read
    in place, or a point fetched from the offsite repository (`at`: the newest one at or before it, and the
    repository copy made after it, as `restore --from offsite --at` fetches)."""
    if root is not None:
        with opened(settings, root) as storage:
            yield storage, point, None
        return
    with fetched(settings, point, at=at) as (folder, mirror, search_copy):
        if mirror is not None:
            settings.minio.mirror_dir = str(mirror)  # an absolute path: the fetched copy
        else:
            settings.minio.enabled = False
        yield None, str(folder), search_copy


def _run(settings: Settings, plan: Plan, identity: Path | None) -> dict[str, Any]:
    plan.rollback_settings = state.settings()  # this machine's own mirror, should MinIO's part be rolled back
    with decrypted(settings, plan.point, identity) if plan.point else nullcontext(None) as plain:
        plan.point = plain
        return execute(settings, plan, identity)


def move(
    from_root: Annotated[Optional[Path], typer.Option("--from-root", help="The old machine's storage root, copied "
                                                                          "here (read only).")] = None,
    from_offsite: Annotated[bool, typer.Option("--from-offsite", help="The offsite repository this config names.")] = False,
    point: Annotated[Optional[str], typer.Option(help="daily/2026-11-24, ... (default: the newest complete).")] = None,
    at: Annotated[Optional[str], typer.Option(help="A moment: the newest complete point at or before it, and "
                                                   "objects and search as they were then (as `restore --at`).")] = None,
    identity: Annotated[Optional[Path], typer.Option(help="age identity file, for encrypted points.")] = None,
    wait_minutes: Annotated[float, typer.Option(help="How long to wait for the data services to start.")] = 30,
    start: Annotated[bool, typer.Option("--start-containers", help="Start their existing containers through the "
                                        "Docker API (docker.host; `docker compose create` made them).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; required without a terminal.")] = False,
) -> None:
    """Bring RAGFlow up on this machine from backups alone: docker/ and .env, then (once the data services
    run) MySQL, search, MinIO and Redis; a report against the 30-minute objective."""
    if (from_root is None) == (not from_offsite):
        fail("give where the backups are: --from-root PATH (the old storage root, copied here) or --from-offsite",
             code=2)
    if not yes and not sys.stdin.isatty():
        fail("refusing to move without a terminal to confirm on: pass --yes", code=2)
    moment = parse_moment(at) if at else None  # refused before anything is asked or changed
    if not yes and not typer.confirm("Restore RAGFlow's docker/ folder and .env, then its data, on this machine?"):
        fail("not confirmed; nothing was changed", code=1)
    settings = state.settings()
    clean_leftovers(settings)  # what a killed restore or move from offsite left, as `restore` does first
    started = time.monotonic()
    results: dict[str, Any] = {}
    try:
        with _source(settings, from_root, point, moment) as (storage, ref, search_copy):
            config = make_plan(settings, ref, moment, components=None, storage=storage)
            pinned = config.point.ref if storage is not None and config.point else ref  # the same point throughout
            if "config" in config.components:
                console.print(f"[bold]1/3[/bold] RAGFlow's docker/ folder and .env into {settings.ragflow_dir}")
                results.update(_run(settings, make_plan(settings, pinned, moment, ["config"], storage=storage),
                                    identity)["results"])
            else:
                console.print(f"{styled('warn')} the point holds no RAGFlow config: start the services with your own .env")
            fresh = state.settings()  # the restored .env holds the passwords the data expects
            fresh.minio.mirror_dir = settings.minio.mirror_dir
            fresh.minio.enabled = fresh.minio.enabled and settings.minio.enabled
            rest = [name for name in ORDER if name in DATA and name in config.components
                    and (name != "minio" or fresh.minio.enabled)]
            if start:
                console.print(f"[bold]2/3[/bold] started through the Docker API: "
                              f"{', '.join(start_containers(fresh, rest)) or 'none (all running, or none made)'}")
            else:
                console.print(f"[bold]2/3[/bold] start RAGFlow's data services now ({', '.join(rest)}), e.g. `cd "
                              f"{escape(str(fresh.ragflow_dir))} && docker compose -f docker-compose-base.yml up -d`")
            waited = wait_for_services(fresh, rest, wait_minutes)
            console.print(f"[bold]3/3[/bold] restoring {', '.join(rest)}")
            plan = make_plan(fresh, pinned, moment, components=rest, storage=storage)
            show_mapping(fresh, plan)
            if moment is not None and from_root is None:
                interval_from_copy(fresh, plan, search_copy)
            for name, said in plan.moments.items():  # each one's moment, as restore's plan says
                console.print(f"  {name}: {escape(str(said))}", soft_wrap=True, highlight=False)
            with fetched_repository(fresh, plan.point, search_copy) if from_root is None and "search" in rest \
                    else nullcontext(register_source_repository(fresh, plan.point) if "search" in rest else None) as line:
                if line:
                    console.print(line)
                results.update(_run(fresh, plan, identity)["results"])
    except (OffsiteError, OffsitePermanent, PermanentError, RestoreFailed, LookupError) as exc:
        fail(f"{exc}; `ragflow-backup restore --rollback` undoes the last step that finished")
    _report(results, time.monotonic() - started, waited)


def _report(results: dict[str, Any], seconds: float, waited: float) -> None:
    table = Table(title="moved: what each component's restore expected and found")
    for column in ("component", "seconds", "result"):
        table.add_column(column, overflow="fold")
    for name, result in results.items():
        took = getattr(result, "seconds", None)  # each component's restore times itself (Redis's says a count only)
        table.add_row(name, f"{took:.1f}" if isinstance(took, (int, float)) else "-", escape(in_words(name, result)))
    console.print(table)
    within = seconds - waited <= OBJECTIVE_SECONDS
    console.print(f"{styled('ok' if within else 'warn')} {seconds / 60:.1f} minutes in all, of which {waited / 60:.1f} "
                  f"waiting for the services to start: {(seconds - waited) / 60:.1f} minutes of restoring against the "
                  f"{OBJECTIVE_SECONDS // 60}-minute objective", soft_wrap=True)
    if not within:
        raise typer.Exit(1)
