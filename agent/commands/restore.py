"""`restore` (guided on a terminal, scripted with flags) and `drill`."""
from __future__ import annotations

import sys
from contextlib import ExitStack, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.prompt import Confirm, Prompt
from rich.syntax import Syntax
from rich.table import Table

from actors.actions.drill import run_drill
from actors.actions.foreign import (
    fetched_repository,
    refuse_other_prefix,
    refuse_unknown_buckets,
    register_source_repository,
    snapshot_is_here,
)
from actors.actions.offsite import OffsiteError, OffsitePermanent, fetched
from actors.actions.offsite_leftovers import remove_leftovers
from actors.actions.restore import RestoreFailed, execute, make_plan, refuse_newer_point, rollback_last
from actors.actions.restore_at import search_from_copy
from actors.actions.restore_checks import check_before_restore
from actors.config.restore import diff
from actors.minio.mirror import open_store
from actors.minio.plan import mirrored_buckets
from agent.commands.common import console, fail, human_age, human_bytes, state, styled
from agent.commands.json_views import JsonOption, drill_view, emit, quiet_for_json, restore_plan_view
from agent.drill_report import write_report
from agent.restore_report import in_words
from core.component import PermanentError
from core.encryption import decrypted
from core.layout import MIRROR_DIR
from core.points import Storage
from core.safe_paths import UnsafePath
from core.source_root import name_mapping, opened, refuse_unmappable


def parse_moment(text: str) -> datetime:
    """ISO 8601 ('2026-11-24T10:30', '2026-11-24 10:30:00+01:00'); without a zone, the local time."""
    try:
        moment = datetime.fromisoformat(text.strip())
        return moment if moment.tzinfo else moment.astimezone()  # year 1 has no local time: ValueError
    except (ValueError, OverflowError):
        fail(f"--at {text!r} is not a date and time (e.g. 2026-11-24T10:30 or 2026-11-24T10:30:00+00:00)", code=2)


def _choose_point_interactively(settings) -> str | None:

    complete = [p for p in Storage(settings.storage_root).points() if p.manifest().status == "complete"]
    if not complete:
        return None
    complete.sort(key=lambda p: p.manifest().created_at, reverse=True)
    table = Table(title="complete backup points")
    for column in ("#", "point", "age", "size", "components"):
        table.add_column(column)
    for number, point in enumerate(complete[:20], 1):
        manifest = point.manifest()
        table.add_row(str(number), point.ref, human_age(manifest.created_at), human_bytes(manifest.total_bytes),
                      ", ".join(manifest.components))
    console.print(table)
    answer = Prompt.ask("Which point", choices=[str(n) for n in range(1, min(20, len(complete)) + 1)], default="1")
    return complete[int(answer) - 1].ref


def restore(
    point: Annotated[Optional[str], typer.Option(help="daily/2026-11-24, weekly/2026-W48, ... (default: newest complete).")] = None,
    at: Annotated[Optional[str], typer.Option(help="A moment: the newest complete point at or before it, and objects as they were then.")] = None,
    component: Annotated[Optional[list[str]], typer.Option("--component", "-C", help="config, mysql, search, minio, redis (repeatable).")] = None,
    kb: Annotated[Optional[str], typer.Option(help="Only this knowledge base (its id): rows, chunks, objects.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; required without a terminal.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Undo the last restore from its safety point.")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="The whole state: also remove Redis keys, RAGFlow's indices "
                                                        "and buckets the point does not have (the safety point "
                                                        "keeps them).")] = False,
    source: Annotated[str, typer.Option("--from", help="local (the storage root) or offsite (the restic repository; "
                                                       "--point daily/2026-11-24 or latest).")] = "local",
    from_root: Annotated[Optional[Path], typer.Option("--from-root", help="Another installation's storage root "
                         "(staging, a new server): read only; its names are mapped to this config's.")] = None,
    identity: Annotated[Optional[Path], typer.Option(help="age identity file, for an encrypted point.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Restore a point taken under a newer RAGFlow than the one "
                                                        "installed (unsupported).")] = False,
    as_json: Annotated[bool, typer.Option("--json", callback=quiet_for_json, help="With --dry-run: print the plan "
                                                          "as one JSON document (docs/json.md).")] = False,
    reparse_changed: Annotated[bool, typer.Option("--reparse-changed", help="With --at: mark the documents whose rows "
                                                  "changed after the search snapshot for RAGFlow to parse again.")] = False,
) -> None:
    """Bring data back from a point (and objects from the mirror), with a safety point and rollback."""
    if as_json and (rollback or not dry_run):
        fail("--json prints the plan of a --dry-run; add --dry-run (a restore or rollback reports in words)", code=2)
    yes = yes or as_json  # no prompts nobody sees: a dry run changes nothing
    settings = state.settings()
    if source not in ("local", "offsite"):
        fail(f"--from {source!r}: choose local or offsite", code=2)
    if reparse_changed and not at:
        fail("--reparse-changed goes with --at (the documents changed between the search snapshot and that moment)",
             code=2)
    if not dry_run:
        clean_leftovers(settings)
    if from_root is not None:
        if rollback or source != "local":
            fail("--from-root restores from another installation's root: leave out --rollback and --from "
                 "(`restore --rollback` alone undoes it)", code=2)
        _restore_from_root(settings, from_root, point, at, component, kb, yes, dry_run, identity, force,
                           reparse_changed)
        return
    if source == "offsite" and not rollback:

        here: list[bool] = []  # the answer of search_here below, for the line saying why nothing was fetched

        def search_here(folder: Path) -> bool:
            try:
                here.append(snapshot_is_here(settings, Storage(settings.storage_root).point(str(folder))))
            except (LookupError, UnsafePath):
                here.append(False)
            return here[-1]

        try:
            with fetched(settings, point, search_repo=not component or "search" in component,
                         at=parse_moment(at) if at else None,
                         # --at may need an interval snapshot that only the copy made after T holds: fetched then
                         search_here=None if at else search_here) as (folder, mirror, search_copy):
                if mirror is not None:
                    settings.minio.mirror_dir = str(mirror)  # an absolute path: the fetched copy
                console.print(f"fetched {folder.parent.name}/{folder.name} from the offsite repository"
                              + (" with the MinIO mirror" if mirror else " (no MinIO mirror copy there)")
                              + (" and the search snapshot repository" if search_copy else "")
                              + ("; the search snapshot repository is not fetched: this search server holds the "
                                 "point's snapshot" if any(here) else ""), soft_wrap=True)
                _restore(settings, str(folder), at, component, kb, yes, dry_run, identity=identity,
                         allow_choice=False, force=force, exact=exact, offsite=(search_copy,),
                         reparse_changed=reparse_changed)
        except (OffsiteError, OffsitePermanent) as exc:
            fail(str(exc))
        return
    _restore(settings, point, at, component, kb, yes, dry_run, identity=identity, rollback=rollback, force=force,
             exact=exact, reparse_changed=reparse_changed)


def clean_leftovers(settings) -> None:
    """What a killed restore from offsite left (a fetched point; a search repository folder and registration),
    removed unless in use, and said (actors/actions/offsite_leftovers.py)."""
    said, problem = remove_leftovers(settings)
    for line in said:
        console.print(escape(line), soft_wrap=True, highlight=False)
    if problem:
        console.print(f"{styled('warn')} {escape(problem)}", soft_wrap=True, highlight=False)


def _restore_from_root(settings, root: Path, point, at, component, kb, yes, dry_run, identity, force,
                       reparse_changed=False) -> None:
    """A restore from another installation's storage root, read only (core/source_root.py)."""
    had_minio = settings.minio.enabled
    try:
        with opened(settings, root) as storage:
            if had_minio and not settings.minio.enabled:
                console.print(f"{styled('warn')} {escape(str(root))} has no MinIO mirror ({MIRROR_DIR}/): objects "
                              "are not restored", soft_wrap=True)
            console.print(f"reading the points of {escape(str(root))} (read only: nothing is written there)")
            _restore(settings, point, at, component, kb, yes, dry_run, identity=identity, allow_choice=False,
                     force=force, storage=storage, reparse_changed=reparse_changed)
    except PermanentError as exc:
        fail(str(exc))


def show_mapping(settings, plan) -> None:
    """The names of the source installation and this one's, per component; refuses what cannot be mapped."""
    buckets = mirrored_buckets(open_store(settings)) if "minio" in plan.components else []
    refuse_unmappable(settings, plan.components, buckets)
    if "minio" in plan.components:
        refuse_other_prefix(settings, open_store(settings))
        if not plan.kb:
            refuse_unknown_buckets(settings, buckets)
    table = Table(title="names mapped from the source installation to this one")
    for column in ("component", "name", "in the source", "here", ""):
        table.add_column(column, overflow="fold")
    for item in name_mapping(settings, plan.point, plan.components, buckets):
        table.add_row(item.component, item.what, escape(item.source), escape(item.target),
                      "mapped" if item.changed else "same")
    console.print(table)


def _restore(settings, point, at, component, kb, yes, dry_run, identity=None, rollback=False, allow_choice=True,
             force=False, exact=False, storage=None, offsite=None, reparse_changed=False) -> None:
    """`offsite`: (the fetched copy of the search snapshot repository or None,) for a restore from offsite."""

    interactive = sys.stdin.isatty() and not yes
    if rollback:
        if not yes and not (interactive and Confirm.ask("Put back the data as it was before the last restore?")):
            fail("not confirmed: pass --yes to roll back without a terminal", code=2)
        try:
            done = rollback_last(settings, identity)
        except (PermanentError, RestoreFailed) as exc:
            fail(str(exc))
        console.print(f"rolled back {', '.join(done['components'])} from safety point {done['safety']}")
        return
    if not interactive and not yes and not dry_run:
        fail("refusing to restore without a terminal to confirm on: pass --yes (or --dry-run to see the plan)", code=2)
    if interactive and allow_choice and point is None and at is None:
        point = _choose_point_interactively(settings)
    if interactive and not component and not kb:
        answer = Prompt.ask("Components (comma-separated, empty for all in the point)", default="")
        component = [part.strip() for part in answer.split(",") if part.strip()] or None
    try:
        plan = make_plan(settings, point, parse_moment(at) if at else None, component, kb, storage=storage,
                         reparse_changed=reparse_changed)
        plan.exact = exact and not kb  # a knowledge base's restore touches only it
        warning = refuse_newer_point(settings, plan, force or dry_run)
        if storage is not None:
            plan.rollback_settings = state.settings()  # this installation's own mirror, for MinIO's rollback
            show_mapping(settings, plan)
            line = register_source_repository(settings, plan.point) if not dry_run and "search" in plan.components \
                and plan.point else None
            if line:
                console.print(line)
        elif offsite is not None:
            plan.rollback_settings = state.settings()  # this installation's own mirror, not the fetched copy
            show_mapping(settings, plan)
            if at:
                interval_from_copy(settings, plan, offsite[0])
    except (PermanentError, LookupError) as exc:
        fail(str(exc), code=2)
    if warning:
        then = "restoring anyway (--force)" if force else "a restore needs --force"
        console.print(f"{styled('warn')} {escape(warning)}; {then}", soft_wrap=True)

    try:
        with ExitStack() as held:
            if offsite is not None and not dry_run and "search" in plan.components and plan.point:
                line = held.enter_context(fetched_repository(settings, plan.point, offsite[0]))
                if line:
                    console.print(line)
            plain = held.enter_context(decrypted(settings, plan.point, identity) if plan.point else nullcontext(None))
            plan.point = plain
            _show_and_run(settings, plan, interactive, dry_run, identity)
    except PermanentError as exc:
        fail(str(exc))


def interval_from_copy(settings, plan, search_copy: Path | None) -> None:
    """restore --at from offsite: search from an interval snapshot the fetched repository copy holds, when one
    is newer than the point's and done by --at (the moments line says which)."""
    if search_copy is None or plan.point is None or "search" not in plan.components:
        return
    found = search_from_copy(settings, plan.point, search_copy, plan.at)
    if found is not None:
        plan.search_from, plan.moments["search"] = found


def _show_and_run(settings, plan, interactive: bool, dry_run: bool, identity: Path | None) -> None:

    console.print("[bold]restore plan[/bold]")
    for line in plan.lines():
        console.print(f"  {line}")
    text = None
    if "config" in plan.components and plan.point and not plan.kb:


        text = diff(settings, commit=plan.config_commit) if plan.config_commit else \
            diff(settings, point=plan.point, record=plan.point.manifest().components["config"])
        console.print("config files that would change (secrets masked):" if text else "config files: no change")
        if text:
            console.print(Syntax(text, "diff"))
    if dry_run:
        try:  # the checks the restore makes before its safety point: a dry run never promises what it refuses
            check_before_restore(settings, plan, identity)
        except PermanentError as exc:
            fail(f"dry run: the restore would be refused: {exc}")
        console.print("dry run: nothing was changed")
        if console.quiet:  # --json (restore's only quiet mode)
            emit("restore", restore_plan_view(plan, text))
        return
    if interactive and not Confirm.ask("Restore now?"):
        fail("not confirmed; nothing was changed", code=1)
    try:
        report = execute(settings, plan, identity)
    except (RestoreFailed, PermanentError) as exc:
        fail(str(exc))
    safety = report["safety"].ref if report["safety"] else "-"
    console.print(f"restore finished in {report['seconds']:.1f}s (safety point {safety}):")
    for name, result in report["results"].items():  # one line each, never folded: numbers stay readable
        console.print(f"  {name}: {in_words(name, result)}", soft_wrap=True, highlight=False, markup=False)
    stray_chunks_report(report)
    changed = report.get("changed_documents") or []
    if report.get("changed_documents_error"):
        console.print(f"{styled('warn')} the documents changed after the search snapshot could not be listed"
                      f"{' or marked' if plan.reparse_changed else ''} ({escape(report['changed_documents_error'])}): "
                      "re-parse the knowledge bases' recently changed documents in RAGFlow", soft_wrap=True)
    if changed:
        marked = "marked for RAGFlow to parse again" if plan.reparse_changed else \
            "parse them again in RAGFlow, or restore with --reparse-changed to mark them"
        console.print(f"{len(changed)} document(s) changed between the search snapshot and "
                      f"{plan.at.isoformat(timespec='seconds')}: their chunks may not match their rows ({marked}):",
                      soft_wrap=True, highlight=False, markup=False)
        for doc in changed[:50]:
            console.print(f"  {doc.id}  kb {doc.kb_id}  {doc.updated_at.isoformat(timespec='seconds')}  {doc.name}",
                          soft_wrap=True, highlight=False, markup=False)
        if len(changed) > 50:
            console.print(f"  ... and {len(changed) - 50} more")
    console.print("undo with `ragflow-backup restore --rollback`")


def stray_chunks_report(report: dict) -> None:
    """The chunks removed because the restored MySQL does not have their documents, per knowledge base."""
    stray = report.get("stray_chunks")
    if report.get("stray_chunks_error"):
        console.print(f"{styled('warn')} nothing was removed of the chunks whose documents the restored MySQL does "
                      f"not have ({escape(report['stray_chunks_error'])}): retrieval may find chunks of deleted "
                      "documents; restore again once MySQL and search answer", soft_wrap=True)
    elif stray is not None and stray.total:
        console.print(f"removed {stray.total} chunk(s) of documents the restored MySQL does not have (deleted "
                      "between the search snapshot and MySQL's moment):", soft_wrap=True, highlight=False, markup=False)
        for kb_id, chunks in sorted(stray.per_kb.items()):
            console.print(f"  kb {kb_id}: {chunks} chunk(s) of {len(stray.documents[kb_id])} document(s)",
                          soft_wrap=True, highlight=False, markup=False)


def drill(
    identity: Annotated[Optional[Path], typer.Option(help="age identity file, when points are encrypted.")] = None,
    staging: Annotated[bool, typer.Option("--staging", help="Restore into the config's staging RAGFlow (`staging:`), "
                                                            "replacing its data, instead of scratch names.")] = False,
    report_file: Annotated[Optional[Path], typer.Option("--report", help="Also write the DR report to this file "
                                                                         "(Markdown; JSON if it ends in .json).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Restore the newest complete point into scratch targets (or staging), compare, clean up, report the time."""

    try:
        report = run_drill(state.settings(), identity, staging=staging)
    except PermanentError as exc:
        fail(str(exc))
    table = Table(title=f"restore drill of {report.point}: {report.seconds:.1f}s of the {report.objective_seconds / 60:.0f}-minute objective")
    for column in ("component", "into", "result", "seconds", "detail"):
        table.add_column(column, overflow="fold")
    for item in report.components:
        table.add_row(item.component, item.target, styled("ok" if item.ok else "fail"), f"{item.seconds:.1f}",
                      escape(item.detail))
    console.print(table)
    if report_file is not None:
        try:
            write_report(report, report_file)
        except OSError as exc:
            fail(f"the drill ran, but its report cannot be written to {report_file}: {exc.strerror}")
        console.print(f"report written to {report_file}", highlight=False)
    if as_json:
        emit("drill", drill_view(report))
    if not report.ok:
        raise typer.Exit(1)
