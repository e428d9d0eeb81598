"""After a restore of MySQL and search together: the chunks of documents the restored MySQL does not have are
removed from the restored indices (actors/search/stray_chunks.py says why they arise and what is matched).

Only a restore in place of both (not a drill's scratch copies), and only the indices the search restore put
back: a whole restore's indices, or those a knowledge-base restore wrote that KB's chunks into (only its chunks).
"""
from __future__ import annotations

import logging
from typing import Any

from actors.search.restore import KBRestoreResult, SearchRestoreResult
from actors.search.stray_chunks import StrayChunks, remove_stray_chunks
from core.config import Settings

log = logging.getLogger("ragflow_backup.restore")


def restored_indices(result: Any) -> list[str]:
    """The live indices a search restore's result says it put back; [] for renamed copies (a drill)."""
    if isinstance(result, KBRestoreResult):
        return sorted(result.found)
    if isinstance(result, SearchRestoreResult) and result.live:
        return sorted(result.indices.values())
    return []


def remove_after_restore(settings: Settings, results: dict[str, Any], kb: str | None,
                         targets: dict[str, Any]) -> StrayChunks | None:
    """Remove the stray chunks when this restore put back both MySQL and search in place; None otherwise.
    Raises (nothing removed) when the restored MySQL or the indices cannot be read."""
    if not {"mysql", "search"} <= set(results) or targets.get("mysql") or targets.get("search"):
        return None
    indices = restored_indices(results["search"])
    if not indices:
        return None
    stray = remove_stray_chunks(settings, indices, kb=kb, log=log)
    log.info("removed %d chunks of documents the restored MySQL does not have (%s)", stray.total,
             ", ".join(f"kb {kb_id}: {n}" for kb_id, n in sorted(stray.per_kb.items())) or "none")
    return stray
