"""Retention of the binlog archive: the files a replay from the oldest kept daily point needs stay, older ones go.

Only the holder of the archive (the agent's archiver, which keeps the index in memory) may change the index. So
retention removes files itself only while no archiver holds the archive's lock; otherwise it leaves a request in
state/ that the archiver carries out at its next poll. Either way the removal is audited."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from actors.binlog.index import ArchivedFile, ArchiveIndex, load_index, save_index
from core import audit, locks
from core.atomic import write_bytes_atomic
from core.config import Settings
from core.layout import Layout
from core.safe_paths import entry_problem, plain_name, read_bounded, relative_parts

log = logging.getLogger("ragflow_backup.binlog")

ARCHIVE_LOCK = "binlog-archive.lock"
REQUEST = "binlog-keep-from.json"


def archive_lock(layout: Layout) -> Path:
    """Held by the process that keeps the archive (one per storage root)."""
    return layout.made_lock(ARCHIVE_LOCK)


def files_before(index: ArchiveIndex, keep_from: str) -> list[ArchivedFile]:
    """The complete files archived before `keep_from` (in archive order); none when it is not archived."""
    names = [entry.name for entry in index.files]
    if keep_from not in names:
        return []
    return [entry for entry in index.files[:names.index(keep_from)] if entry.complete]


def drop_before(layout: Layout, index: ArchiveIndex, keep_from: str, why: str) -> list[str]:
    """Remove the files before `keep_from` from the index and the disk (index first: a crash leaves a stray file,
    never an entry without its file); the caller holds the archive. The names removed."""
    doomed = files_before(index, keep_from)
    if not doomed:
        return []
    names = {entry.name for entry in doomed}
    index.files = [entry for entry in index.files if entry.name not in names]
    index.gaps = [gap for gap in index.gaps if gap.before is None or gap.before not in names]
    save_index(layout, index)
    for name in sorted(names):
        path = layout.binlog_archive / name
        if entry_problem(path, want_dir=False) is None:
            os.unlink(path)
    audit.record(layout.root, "binlog-prune", None, "done", deleted=sorted(names), keep_from=keep_from, reason=why)
    log.info("binlog archive: removed %d files before %s (%s)", len(names), keep_from, why)
    return sorted(names)


def prune_archive(settings: Settings, keep_from: str, why: str, dry_run: bool = True) -> list[ArchivedFile]:
    """The files that go (all of them in a dry run); removed now when no archiver runs, else by the archiver."""
    layout = settings.layout
    index = load_index(layout)
    doomed = files_before(index, keep_from)
    if dry_run or not doomed:
        return doomed
    try:
        with locks.exclusive(archive_lock(layout), "the binlog archive"):
            drop_before(layout, index, keep_from, why)
    except locks.Busy:  # the agent keeps the archive: it removes them at its next poll
        layout.private(*relative_parts(layout.root, layout.state, "state folder"))
        write_bytes_atomic(layout.state_file(REQUEST), json.dumps({"keep_from": keep_from, "why": why}).encode())
    return doomed


def take_request(layout: Layout) -> tuple[str, str] | None:
    """A removal retention asked for (read as untrusted), taken away; None when there is none or it is unusable."""
    path = layout.state_file(REQUEST)
    try:
        data = json.loads(read_bounded(layout.root, relative_parts(layout.root, path, "request"), 4096, "request"))
        request = (plain_name(data["keep_from"], "binlog file name"), str(data.get("why", ""))[:300])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("binlog archive: ignoring the retention request %s: %s", path, exc)
        request = None
    path.unlink(missing_ok=True)
    return request
