"""A frozen view of the binlog archive for the offsite copy: the index read once, the complete files it lists
hard-linked (zero bytes), the live file copied up to the size the index vouches for. What the view holds is
exactly what its index says, whatever the archiver appends meanwhile."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from actors.binlog.index import INDEX_NAME, ArchiveIndex
from core.atomic import private_dir, write_bytes_atomic
from core.layout import Layout
from core.safe_paths import entry_problem, opened

CHUNK = 1 << 20


def freeze(layout: Layout, index: ArchiveIndex, target: Path) -> Path:
    """Fill `target` (made anew, 0700) with the archive as `index` describes it; return it."""
    shutil.rmtree(target, ignore_errors=True)  # what a killed copy left
    private_dir(target)
    archive = layout.binlog_archive
    for entry in index.files:
        if entry_problem(archive / entry.name, want_dir=False):
            continue  # gone (retention) or planted: `verify` reports it; the copy carries what is sound
        if entry.complete:
            os.link(archive / entry.name, target / entry.name)
            continue
        with opened(archive, (entry.name,), "binlog file") as source, open(target / entry.name, "wb") as copy:
            left = entry.size
            while left > 0 and (block := source.read(min(CHUNK, left))):
                copy.write(block)
                left -= len(block)
    write_bytes_atomic(target / INDEX_NAME, index.model_dump_json(indent=1).encode())
    return target
