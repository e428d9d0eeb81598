"""Pins of points that are gone from this storage root, reconciled with their snapshots offsite.

A pinned point's snapshot is tagged pinned=true (actors/actions/offsite.py), which offsite retention keeps
(`restic forget --keep-tag`). `unpin` re-tags it at once; with the repository away it is left to the next offsite
job, which re-tags the snapshots of the points still here. Local retention may take the point first (it is no
longer pinned), and a snapshot whose point is gone cannot be compared with a pin file: it would stay pinned
offsite for ever. So the pin's history is read from this root's audit log (logs/audit.log, written by `pin`,
`unpin` and retention's `delete`): a gone point whose last word there is `unpin` or `delete` (retention never
deletes a pinned point) is no longer pinned here, and its snapshot's pin tags are removed; offsite retention's
policy then decides about it like any other.

A point gone with no such word (a storage root lost and started afresh, a log rotated away, a pin made by
another installation sharing the repository) keeps its tags: a pin is only let go on evidence. The audit log is
read back from the storage root (untrusted): only a line naming a point reference as its target counts, and at
worst a forged one makes a snapshot subject to the normal offsite policy again.
"""
from __future__ import annotations

import logging
from pathlib import Path

from core import audit
from core.restic import Restic, Snapshot

log = logging.getLogger("ragflow_backup.offsite")

PIN_KEYS = ("pin", "pinned")  # the tags a pinned point's snapshot carries
PIN_EVENTS = ("pin", "unpin", "delete")  # audit actions that say whether a point is pinned here (or gone)
LET_GO = ("unpin", "delete")


def pin_history(storage_root: Path) -> dict[str, str]:
    """Point reference -> the last audit action of PIN_EVENTS that named it (successful ones only)."""
    last: dict[str, str] = {}
    for line in audit.read(storage_root):
        action, target = line.get("action"), line.get("target")
        if action in PIN_EVENTS and isinstance(target, str) and line.get("result") == "done":
            last[target] = action
    return last


def pin_tags_of(snap: Snapshot) -> list[str]:
    return [f"{key}={value}" for key in PIN_KEYS for value in snap.tags.get(key, [])]


def release_gone(storage_root: Path, restic: Restic, gone: list[Snapshot]) -> list[str]:
    """Remove the pin tags of the snapshots in `gone` (points no longer in this root) whose point this root's
    audit log says was unpinned or deleted by retention; the point references released."""
    pinned = [snap for snap in gone if snap.point and pin_tags_of(snap)]
    if not pinned:
        return []
    history = pin_history(storage_root)
    released = []
    for snap in pinned:
        last = history.get(snap.point)
        if last not in LET_GO:
            log.info("offsite snapshot %s of %s stays pinned: the point is gone from this storage root, and its "
                     "audit log does not say it was unpinned", snap.id[:8], snap.point)
            continue
        restic.retag(snap, [], pin_tags_of(snap))
        log.info("offsite snapshot %s of %s is no longer pinned: the point was %s here", snap.id[:8], snap.point,
                 "unpinned" if last == "unpin" else "unpinned and then deleted by retention")
        released.append(snap.point)
    return released
