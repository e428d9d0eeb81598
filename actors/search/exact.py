"""An exact search restore (`upgrade rollback`, `restore --exact`): after the point's indices are restored, the
indices the point does not have are deleted, so the search engine holds RAGFlow's indices as at the point.

Only RAGFlow's own indices are ever considered: those matching `search.indices` (what a backup snapshots) AND
RAGFlow's naming (`ragflow_<tenant>`, `ragflow_doc_meta_<tenant>`, `memory_<...>`), never another index on the
server. Of those, only the ones the safety point's record counted (`held_by`, taken by the restore action before
any change, so its snapshot holds them) are deleted; one created after it is left and said.
"""
from __future__ import annotations

import logging
import re

from actors.search.backup import NAME, classified, index_doc_counts
from actors.search.restore import SearchRestoreResult
from core import clients
from core.config import Settings
from core.manifest import ComponentRecord
from core.points import Point

# RAGFlow's index names: one chunk index and one doc-meta index per tenant, memory indices (docker/.env's engines).
RAGFLOW_INDEX = re.compile(r"^(ragflow|memory)_[0-9a-z][0-9a-z_-]*$")


def held_indices(held_by: Point | None) -> set[str]:
    """The indices the safety point's search record counted (its snapshot holds them)."""
    if held_by is None:
        return set()
    record = held_by.manifest().components.get(NAME)
    return set(record.counts) if record is not None and record.status == "ok" and record.details.get("snapshot") \
        else set()


def remove_indices_not_in(settings: Settings, record: ComponentRecord, held_by: Point | None,
                          result: SearchRestoreResult, log: logging.Logger) -> SearchRestoreResult:
    """Delete RAGFlow's live indices that `record` (the point's) lacks and the safety point holds."""
    search = settings.search
    client = clients.search_client(search)
    with classified(search):
        live = index_doc_counts(client, search.indices)
        extra = sorted(name for name in live if name not in record.counts and RAGFLOW_INDEX.match(name))
        held = held_indices(held_by)
        for name in extra:
            if name in held:
                client.indices.delete(index=name)
                result.removed.append(name)
            else:
                result.left.append(name)
    log.info("search: %d indices the point does not have deleted (the safety point %s holds them)%s",
             len(result.removed), held_by.ref if held_by else "-",
             f"; left {', '.join(result.left)}: not in the safety point" if result.left else "")
    return result
