"""`pin` and `unpin`: keep a point past retention (core/points.py `Point.pin`), and let it go again."""
from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from actors.actions.offsite import OffsiteError, OffsitePermanent, retag_point
from actors.actions.retention import old_pins
from agent.commands.common import console, fail, state, styled
from agent.doctor import Check
from core import audit
from core.config import Settings
from core.points import Point, Storage, pin_name
from core.safe_paths import UnsafePath


def existing_point(storage: Storage, ref: str) -> Point:
    """The point `ref` names, or a message naming what to do (never a traceback)."""
    try:
        return storage.point(ref)
    except (LookupError, UnsafePath) as exc:
        fail(str(exc), code=2)


def pin_point(point: Point, name: str) -> None:
    """Pin a complete point as `name`; a point that is not complete is refused (nothing to come back to)."""
    try:
        pin_name(name)
        status = point.status()
    except (ValueError, UnsafePath) as exc:
        fail(str(exc), code=2)
    if status != "complete":
        fail(f"{point.ref} is {status}, not complete: only a complete point is worth keeping; pin another "
             "(`ragflow-backup list`)", code=2)
    try:
        point.pin(name)
    except OSError as exc:
        fail(f"cannot write the pin of {point.ref}: {exc}")
    audit.record(point.storage.root, "pin", point.ref, "done", pin=name)


def tag_offsite(settings: Settings, point: Point) -> None:
    """With the offsite copy on, the point's snapshot there is re-tagged now (offsite retention keeps pinned ones);
    if the repository cannot be reached, the next offsite job does it (it re-tags before it forgets anything)."""
    if not settings.offsite.enabled:
        return
    try:
        retag_point(settings, point)
    except (OffsiteError, OffsitePermanent) as exc:
        console.print(f"{styled('warn')} " + escape(f"the offsite copy of {point.ref} is not re-tagged yet ({exc}); the "
                                                    "next offsite job re-tags it before offsite retention runs"),
                      soft_wrap=True, highlight=False)


def pin(
    point: Annotated[str, typer.Argument(help="daily/2026-11-24, 2026-11-24 or weekly/2026-W48.")],
    name: Annotated[str, typer.Argument(help="What it is kept for, e.g. before-migration (letters, digits, . _ + -).")],
) -> None:
    """Pin a complete point: retention never deletes it (shown in `list`; `status` reports old pins)."""
    settings = state.settings()
    target = existing_point(Storage(settings.storage_root), point)
    pin_point(target, name)
    tag_offsite(settings, target)
    console.print(f"pinned {target.ref} as {name}: retention keeps it until `ragflow-backup unpin {target.ref}`",
                  highlight=False)


def unpin(
    point: Annotated[str, typer.Argument(help="The pinned point, e.g. daily/2026-11-24.")],
) -> None:
    """Remove a point's pin: retention's policy decides about it again (at the next prune)."""
    settings = state.settings()
    target = existing_point(Storage(settings.storage_root), point)
    try:
        removed = target.unpin()
    except (OSError, UnsafePath) as exc:
        fail(f"cannot remove the pin of {target.ref}: {exc}")
    if not removed:
        console.print(f"{target.ref} was not pinned; nothing changed", highlight=False)
        return
    audit.record(target.storage.root, "unpin", target.ref, "done")
    tag_offsite(settings, target)
    console.print(f"unpinned {target.ref}: retention's policy decides about it again", highlight=False)


def old_pin_lines(settings: Settings) -> list[str]:
    """One sentence per pinned point older than retention.pinned_warn_days (kept; worth a look)."""
    days = settings.retention.pinned_warn_days
    return [f"pinned point {item.ref} ({item.pin}) is {item.days:.0f} days old, more than retention.pinned_warn_days "
            f"({days}); it is kept: `ragflow-backup unpin {item.ref}` when it is no longer needed"
            for item in old_pins(Storage(settings.storage_root), days)]


def pinned_checks(settings: Settings) -> list[Check]:
    """doctor's row for old pins (a warning: nothing is wrong, but the space is held)."""
    lines = old_pin_lines(settings)
    if not lines:
        return []
    return [Check("pinned points", "warn", "; ".join(lines), "unpin what is no longer needed, or raise "
                                                             "retention.pinned_warn_days")]
