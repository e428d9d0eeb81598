"""Restore: pick a point (or a moment), take a safety point of what will be replaced, restore each
component through its module's restore function (each checks its own counts), and, if any step fails,
put the safety point back. Every restore and rollback is written to logs/audit.log.

MinIO has no artifact in a point: it comes back from the versioned mirror as it was at the moment asked
(the point's time by default), and its rollback is the mirror's state at the moment the restore began.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actors.actions.restore_at import choose
from actors.actions.restore_checks import check_before_restore
from actors.actions.restore_plan import Plan
from actors.actions.restore_stray import remove_after_restore
from actors.actions.runs import describe, run_component
from actors.components import COMPONENTS, IN_POINTS, RESTORABLE
from actors.config import restore as config_restore
from actors.search.changed_documents import ChangedDocument, changed_documents, mark_for_reparse
from core import audit as audit_log
from core import locks, ragflow_version
from core.atomic import write_bytes_atomic
from core.component import NothingChanged, PermanentError
from core.config import Settings
from core.encryption import IdentityNeeded, decrypted
from core.face import RestoreRequest
from core.locks import Busy
from core.points import SAFETY, Point, Storage
from core.safe_paths import UnsafePath

log = logging.getLogger("ragflow_backup.restore")

# Config first (RAGFlow's settings), then the database, the chunks, the objects, Redis last (each one's restore_rank).
# Only what is restored by itself: the binlog archive is replayed by the MySQL restore (core/face.py `restorable`).
ORDER = tuple(sorted(RESTORABLE, key=lambda name: COMPONENTS[name].restore_rank))
PER_KB = tuple(name for name in ORDER if COMPONENTS[name].per_kb)  # what a knowledge base has


class RestoreFailed(RuntimeError):
    """A restore failed; the message says whether the rollback put everything back."""


def complete_points(storage: Storage) -> list[tuple[datetime, Point]]:
    """(created_at, point) of every complete point. A manifest that cannot be used (edited, truncated,
    planted) is skipped and said: one bad point must not stop a restore from the good ones."""
    found = []
    for point in storage.points():
        try:
            manifest = point.manifest()
        except (ValueError, OSError, LookupError) as exc:  # pydantic's ValidationError is a ValueError
            why = str(exc) if isinstance(exc, UnsafePath) else f"{type(exc).__name__}"
            log.warning("%s skipped: its manifest.json cannot be used (%s); `ragflow-backup verify %s` says more",
                        point.ref, why, point.ref)
            continue
        if manifest.status == "complete":
            found.append((manifest.created_at, point))
    return found


def newest_complete(storage: Storage, at: datetime | None = None) -> Point | None:
    candidates = [(when, point) for when, point in complete_points(storage) if at is None or when <= at]
    return max(candidates, key=lambda item: item[0])[1] if candidates else None


def make_plan(settings: Settings, point_ref: str | None = None, at: datetime | None = None,
              components: list[str] | None = None, kb: str | None = None, storage: Storage | None = None,
              reparse_changed: bool = False) -> Plan:
    """`storage`: where the points are read (another installation's root: core/source_root.py); default ours."""
    storage = storage or Storage(settings.storage_root)
    refuse_not_restorable(components or [])
    if at is not None and at > datetime.now(timezone.utc):
        raise PermanentError(f"--at {at.isoformat(timespec='seconds')} is in the future: give a moment that has been "
                             "(the newest complete point at or before it is restored)")
    if point_ref:
        point = storage.point(point_ref)
        try:
            manifest = point.manifest()
        except UnsafePath:
            raise
        except (ValueError, OSError) as exc:  # edited or truncated by hand: said, never a traceback
            raise PermanentError(f"{point.folder / 'manifest.json'} cannot be used ({type(exc).__name__}): it was "
                                 f"changed after the backup; choose another point (`ragflow-backup list`)") from None
        if manifest.status != "complete":
            raise PermanentError(f"{point.ref} is {point.status()}, not complete: choose another point (`ragflow-backup list`)")
    else:
        if at is not None:
            choice = choose(settings, complete_points(storage), at, components or list(ORDER))
            point = choice.point
        else:
            point = newest_complete(storage, at)
        # Without the mirror there is nothing to bring back from before the first point: say which it is.
        first = newest_complete(storage) if at is not None and point is None and not settings.minio.enabled else None
        if first is not None:
            oldest = min(complete_points(storage), key=lambda item: item[0])[1]
            raise PermanentError(f"no complete point at or before --at {at.isoformat(timespec='seconds')}: the first "
                                 f"is {oldest.ref} ({oldest.manifest().created_at.isoformat(timespec='seconds')}); "
                                 "give a later moment")
    wanted = components or [c for c in ORDER if c != "redis" or settings.redis.enabled]
    unknown = sorted(set(wanted) - set(ORDER))
    if unknown:
        raise PermanentError(f"unknown component(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    if kb:
        if components and set(components) - set(PER_KB):
            raise PermanentError(f"a knowledge base has {', '.join(PER_KB)} only; leave out {', '.join(set(components) - set(PER_KB))}")
        wanted = [c for c in wanted if c in PER_KB]
    chosen = []
    for name in ORDER:
        if name not in wanted:
            continue
        if not COMPONENTS[name].in_points:
            if COMPONENTS[name].enabled(settings):
                chosen.append(name)
            continue
        record = point.manifest().components.get(name) if point else None
        if record is None or record.status != "ok":
            if components:  # asked for by name: say why it cannot be done
                where = point.ref if point else "any complete point"
                raise PermanentError(f"{name} is not in {where}; pick a point that has it (`ragflow-backup list`)")
            continue
        chosen.append(name)
    if not chosen:
        raise PermanentError("nothing to restore: no complete point yet, and no mirror; take a backup first")
    moment = at or (point.manifest().created_at if point else datetime.now(timezone.utc))
    plan = Plan(point, moment, chosen, kb, reparse_changed=reparse_changed)
    if at is not None and not point_ref:
        plan.replay, plan.config_commit, plan.moments = choice.replay, choice.config_commit, choice.moments
        plan.search_from = choice.search_from
    return plan


def refuse_not_restorable(names: list[str]) -> None:
    """A component asked for by name that is never restored by itself (the binlog archive): what to do instead."""
    kept = sorted(name for name in set(names) if name in COMPONENTS and not COMPONENTS[name].restorable)
    if kept:
        raise PermanentError(f"{', '.join(kept)} is not restored by itself: a MySQL restore replays the binlog "
                             "archive to reach a moment; use `ragflow-backup restore --at T` (with -C mysql for the "
                             f"database alone). Components a restore takes: {', '.join(ORDER)}")


def refuse_newer_point(settings: Settings, plan: Plan, force: bool) -> str:
    """A point taken under a newer RAGFlow than the one installed is unsupported (its database has columns the
    older RAGFlow does not know): raise unless `force`; return the warning to show ('' when there is none)."""
    if plan.point is None or not set(plan.components) & {"mysql", "postgres", "search", "config"}:
        return ""
    taken = plan.point.manifest().ragflow
    installed = ragflow_version.detect(settings)
    if not ragflow_version.newer_than(taken, installed):
        return ""
    warning = (f"{plan.point.ref} was taken under a newer RAGFlow ({ragflow_version.describe(taken)}) than the one "
               f"installed ({ragflow_version.describe(installed)}): restoring it under the older RAGFlow is "
               f"unsupported. Run {taken.effective_image or 'the newer image'} first (RAGFLOW_IMAGE in .env, then "
               "`docker compose up -d`)")
    if not force:
        raise PermanentError(warning + ", or pass --force to restore anyway")
    return warning


# ---------------------------------------------------------------- one component


def restore_component(settings: Settings, plan: Plan, name: str, point: Point | None = None, at: datetime | None = None,
                      kb: str | None = None, targets: dict[str, Any] | None = None,
                      held_by: Point | None = None) -> Any:
    """Restore one component from `point` (or the plan's); return the component's own result."""
    point = point or plan.point
    at = at or plan.at
    targets = plan.targets if targets is None else targets
    if name not in ORDER:
        raise PermanentError(f"unknown component {name!r}; choose from {', '.join(ORDER)}")
    record = point.manifest().components.get(name) if point is not None and COMPONENTS[name].in_points else None
    ours = point is plan.point  # a rollback restores from its safety point: no replay, no commit
    if name == "config" and ours and plan.config_commit and not kb:
        return config_restore.restore(settings, commit=plan.config_commit, target_dir=targets.get(name), log=log)
    if name == "search" and ours and plan.search_from:
        point, record = plan.search_from.point, plan.search_from.record
    return COMPONENTS[name].restore(settings, RestoreRequest(point=point, record=record, kb=kb, target=targets.get(name),
                                                             at=at, log=log, exact=plan.exact and not kb,
                                                             held_by=held_by, replay=plan.replay if ours else None,
                                                             keeper=(plan.rollback_settings or settings)
                                                             if ours and not targets.get(name) else None))


# ---------------------------------------------------------------- safety, audit, rollback


def audit(settings: Settings, action: str, result: str, target: str | None = None, **details: Any) -> None:
    """Restores, rollbacks and drills in the one audit log (core/audit.py)."""

    audit_log.record(settings.storage_root, action, target or details.get("point") or details.get("safety"),
                     result, **details)


def take_safety_point(settings: Settings, components: list[str]) -> Point | None:
    """Back up what a restore will replace; refuse to go on if that backup is not complete."""
    names = [name for name in components if name in IN_POINTS and COMPONENTS[name].has_data(settings)]
    if not names:
        return None
    point = Storage(settings.storage_root).new_point(names, tier=SAFETY)
    for name in names:
        run_component(settings, point, name)
    manifest = point.manifest()
    if manifest.status != "complete":
        errors = "; ".join(f"{n}: {r.error}" for n, r in manifest.components.items() if r.error)
        raise RestoreFailed(f"the safety point {point.ref} is {manifest.status} ({errors}); nothing was restored")
    return point


def _remember(settings: Settings, state: dict[str, Any]) -> None:
    write_bytes_atomic(settings.layout.made_state_file(LAST_RESTORE), json.dumps(state, default=str).encode())


LAST_RESTORE = "last_restore.json"  # in state/: what the last restore replaced, for --rollback
MAX_STATE = 1 << 20  # state/last_restore.json is a few hundred bytes of ours; the storage root is untrusted


def last_restore(settings: Settings) -> dict[str, Any] | None:
    """The last restore's state, checked (PermanentError naming the file when it is not what we wrote)."""
    path = settings.layout.state_file(LAST_RESTORE)
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_STATE + 1)
        state = json.loads(data) if len(data) <= MAX_STATE else None
        ok = (isinstance(state, dict) and isinstance(state.get("safety"), (str, type(None)))
              and isinstance(state.get("kb"), (str, type(None))) and isinstance(state.get("components"), list)
              and all(name in COMPONENTS for name in state["components"])
              and datetime.fromisoformat(state["began_at"]) is not None)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise PermanentError(f"{path} is not a restore state this tool wrote (too big, not JSON, or fields missing); "
                             "roll back by hand from the newest safety point (`ragflow-backup list`, "
                             "`restore --point safety/...`)")
    return state


def one_at_a_time(settings: Settings):
    """One restore or rollback at a time per storage root: two would swap data under each other, and
    the second would overwrite the first's rollback state. The second is refused, naming the first."""

    return locks.exclusive(settings.layout.made_lock("restore.lock"), "a restore")


def execute(settings: Settings, plan: Plan, identity: Path | None = None) -> dict[str, Any]:
    """Safety point, then each component in order; on any failure, roll back what was touched.

    With encryption on, the safety point is encrypted like any other, so its rollback needs the identity:
    it is asked for before anything is touched."""

    if settings.encryption.enabled and identity is None and any(c in IN_POINTS for c in plan.components):

        raise IdentityNeeded("encryption is on, so the safety point this restore takes is encrypted and a rollback "
                             "must decrypt it: pass --identity FILE")
    try:
        with one_at_a_time(settings):
            # Before the safety point: what cannot work is said now, and nothing is touched.
            check_before_restore(settings, plan, identity)
            return _execute(settings, plan, identity)
    except Busy as exc:
        raise PermanentError(f"{exc}; nothing was changed") from None


def _execute(settings: Settings, plan: Plan, identity: Path | None) -> dict[str, Any]:
    started = time.monotonic()
    began_at = datetime.now(timezone.utc)
    ident = {"point": plan.point.ref if plan.point else None, "at": plan.at, "components": plan.components, "kb": plan.kb}
    audit(settings, "restore", "started", **ident)
    safety = take_safety_point(settings, plan.components)
    _remember(settings, {"safety": safety.ref if safety else None, "began_at": began_at.isoformat(),
                         "components": plan.components, "exact": plan.exact, **ident})
    touched: list[str] = []
    results: dict[str, Any] = {}
    readable = ExitStack()  # an exact restore reads what the safety point holds: decrypted when encrypted
    try:
        held = readable.enter_context(decrypted(settings, safety, identity)) if plan.exact and safety else safety
        for name in plan.components:
            touched.append(name)
            log.info("restoring %s", name)
            results[name] = restore_component(settings, plan, name, kb=plan.kb, held_by=held)
    except Exception as exc:  # noqa: BLE001 - any failure is rolled back, then reported
        readable.close()
        failure = describe(exc)
        audit(settings, "restore", "failed", error=failure, **ident)
        if isinstance(exc, NothingChanged):
            touched.pop()  # it refused before its first write
        if not touched:
            taken = f" (safety point {safety.ref} taken first)" if safety else ""
            raise RestoreFailed(f"restore failed ({failure}); nothing was changed{taken}") from exc
        try:
            rollback(plan.rollback_settings or settings, safety, began_at, touched, plan.kb, identity=identity,
                     held_by=plan.point if plan.exact else None)
        except Exception as again:  # noqa: BLE001
            audit(settings, "rollback", "failed", error=describe(again), safety=safety.ref if safety else None)
            raise RestoreFailed(f"restore failed ({failure}) AND its rollback failed ({describe(again)}); "
                                f"the safety point {safety.ref if safety else '-'} still holds the data before") from exc
        raise RestoreFailed(f"restore failed ({failure}); rolled back to the state before it "
                            f"(safety point {safety.ref if safety else '-'})") from exc
    readable.close()
    try:  # the data is restored by now: a failure to remove stray chunks is said, not rolled back
        stray, stray_error = remove_after_restore(settings, results, plan.kb, plan.targets), None
    except Exception as exc:  # noqa: BLE001 - reported with the result
        stray, stray_error = None, describe(exc)
        log.warning("the chunks of documents the restored MySQL does not have were not removed: %s", stray_error)
    try:  # likewise a failure to list (or mark) the changed documents
        changed, listing_error = changed_since_snapshot(settings, plan, results), None
    except Exception as exc:  # noqa: BLE001 - reported with the result
        changed, listing_error = [], describe(exc)
        log.warning("could not list the documents changed after the search snapshot: %s", listing_error)
    seconds = time.monotonic() - started
    audit(settings, "restore", "finished", seconds=round(seconds, 1), safety=safety.ref if safety else None, **ident,
          **({"removed_chunks": stray.per_kb} if stray and stray.total else {}))
    return {"results": results, "seconds": seconds, "safety": safety, "changed_documents": changed,
            "changed_documents_error": listing_error, "stray_chunks": stray, "stray_chunks_error": stray_error}


def changed_since_snapshot(settings: Settings, plan: Plan, results: dict[str, Any]) -> list[ChangedDocument]:
    """After a restore to a moment with MySQL and search: the documents whose rows changed between the search
    snapshot and that moment (their chunks may disagree), marked for RAGFlow to parse again when asked."""
    if not plan.moments or plan.point is None or not {"mysql", "search"} <= set(results):
        return []
    snapshot = (plan.search_from.taken_at if plan.search_from else
                plan.point.manifest().components["search"].started_at)
    target = plan.targets.get("mysql")
    changed = changed_documents(settings, snapshot, plan.at, plan.kb, database=target)
    log.info("%d documents changed between the search snapshot (%s) and %s", len(changed),
             snapshot.isoformat(timespec="seconds"), plan.at.isoformat(timespec="seconds"))
    if changed and plan.reparse_changed:
        marked = mark_for_reparse(settings, [doc.id for doc in changed], database=target)
        log.info("marked %d changed documents for RAGFlow to parse again", marked)
    return changed


def rollback(settings: Settings, safety: Point | None, began_at: datetime, components: list[str],
             kb: str | None = None, identity: Path | None = None, held_by: Point | None = None) -> None:
    """Put back what a restore replaced: points' components from the safety point, objects as at
    `began_at`; for a knowledge-base restore, that knowledge base only (nothing else was touched).

    `held_by`: the point an exact restore restored; the rollback is exact too and removes only what that point
    holds (what the restore brought in), so the state before the restore comes back whole."""

    audit(settings, "rollback", "started", safety=safety.ref if safety else None, components=components, kb=kb)
    with decrypted(settings, safety, identity) if safety else nullcontext(None) as plain, \
            decrypted(settings, held_by, identity) if held_by else nullcontext(None) as held:
        plan = Plan(plain, began_at, components, kb, exact=held_by is not None)
        saved = set(plain.manifest().components) if plain else set()
        for name in reversed(components):
            if not COMPONENTS[name].restorable:  # named by a restore of an earlier version: nothing of it changed
                continue
            if COMPONENTS[name].in_points and name not in saved:
                continue  # nothing of it existed before the restore: nothing to put back
            restore_component(settings, plan, name, point=plain, at=began_at, kb=kb, targets={}, held_by=held)
    audit(settings, "rollback", "finished", safety=safety.ref if safety else None, components=components)


def rollback_last(settings: Settings, identity: Path | None = None) -> dict[str, Any]:
    """`restore --rollback`: undo the last restore from its safety point."""

    try:
        with one_at_a_time(settings):
            return _rollback_last(settings, identity)
    except Busy as exc:
        raise PermanentError(f"{exc}; nothing was changed") from None


def _rollback_last(settings: Settings, identity: Path | None) -> dict[str, Any]:
    state = last_restore(settings)
    if not state:
        raise PermanentError("no restore to roll back (no state/last_restore.json under the storage root)")
    storage = Storage(settings.storage_root)
    safety = storage.point(state["safety"]) if state.get("safety") else None
    restored = None  # an exact restore's point: what its exact rollback may remove (what it brought in)
    if state.get("exact") is True and isinstance(state.get("point"), str) and not state["point"].startswith("/"):
        try:
            restored = storage.point(state["point"])
        except (LookupError, UnsafePath):  # gone since (or fetched from offsite): the rollback removes nothing
            restored = None
    rollback(settings, safety, datetime.fromisoformat(state["began_at"]), state["components"], state.get("kb"),
             identity=identity, held_by=restored)
    return state
