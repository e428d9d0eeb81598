"""Chunks of documents the restored MySQL does not have, removed from the indices a restore just put back.

MySQL and search come back from different moments: `restore --at T` replays MySQL to T but takes search from the
newest snapshot before T, and even a point's own dump and snapshot are taken a little apart (the components of a
point run side by side). A document deleted in between is gone from MySQL while its chunks are in the snapshot,
so retrieval would still find them. RAGFlow deletes a document's chunks with its row (api/db/services/
document_service.py); this does the same after the restore: in each restored index, the chunks whose `doc_id`
is not a document of their knowledge base (`kb_id`) in the restored MySQL's `document` table are deleted
(both fields are keywords in RAGFlow's chunk mapping; RAGFlow's doc-meta indices have no `doc_id` and are
never matched).

Only the chunk indices among those given (those this restore restored) and only the knowledge bases given (`kb`), or, for a whole
restore, those whose chunks are in them. MySQL is read before anything is deleted: when it cannot be read,
nothing is removed and the caller says so.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from actors.search.backup import classified, response_body
from actors.search.restore_api import RestoreApi
from core import clients
from core.config import Settings

# RAGFlow's `ragflow_doc_meta_<tenant>` and `memory_...` indices hold no chunks: never looked at.
NOT_CHUNKS = re.compile(r"(^|_)doc_meta_|^memory_")
PAGE = 1000  # composite-aggregation buckets per request
DOC_BATCH = 500  # doc ids per delete query (a terms query; the engines allow 65536)


@dataclass
class StrayChunks:
    """What a restore removed (or, `dry_run`, would remove): chunks per knowledge base and per index."""
    per_kb: dict[str, int] = field(default_factory=dict)
    per_index: dict[str, int] = field(default_factory=dict)
    documents: dict[str, list[str]] = field(default_factory=dict)  # kb -> its doc ids gone from MySQL
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.per_kb.values())


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def chunk_documents(api: RestoreApi, index: str, kb: str | None) -> dict[tuple[str, str], int]:
    """(kb_id, doc_id) -> chunks of `index` (of knowledge base `kb` only, when given), paged with a composite
    aggregation (core in both engines)."""
    query: dict[str, Any] = {"term": {"kb_id": kb}} if kb else {"exists": {"field": "doc_id"}}
    sources = [{"kb": {"terms": {"field": "kb_id"}}}, {"doc": {"terms": {"field": "doc_id"}}}]
    found: dict[tuple[str, str], int] = {}
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": PAGE, "sources": sources, **({"after": after} if after else {})}
        aggs = {"pairs": {"composite": composite}}
        body = response_body(api.client.search(index=index, size=0, query=query, aggs=aggs) if api.es else
                             api.client.search(index=index, body={"size": 0, "query": query, "aggs": aggs}))
        result = body["aggregations"]["pairs"]
        for bucket in result["buckets"]:
            found[(str(bucket["key"]["kb"]), str(bucket["key"]["doc"]))] = int(bucket["doc_count"])
        after = result.get("after_key")
        if not result["buckets"] or after is None:
            return found


def documents_in_mysql(settings: Settings, kbs: set[str], database: str | None) -> set[tuple[str, str]]:
    """(kb_id, id) of the `document` rows of these knowledge bases in the restored database."""
    if not kbs:
        return set()
    table = f"{_quoted(database or settings.mysql.database)}.`document`"
    ordered = sorted(kbs)
    rows: set[tuple[str, str]] = set()
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn, conn.cursor() as cur:
        for start in range(0, len(ordered), DOC_BATCH):
            batch = ordered[start:start + DOC_BATCH]
            cur.execute(f"SELECT kb_id, id FROM {table} WHERE kb_id IN ({', '.join(['%s'] * len(batch))})", batch)
            rows.update((str(kb_id), str(doc_id)) for kb_id, doc_id in cur.fetchall())
    return rows


def remove_stray_chunks(settings: Settings, indices: list[str], kb: str | None = None, database: str | None = None,
                        dry_run: bool = False, log: logging.Logger | None = None) -> StrayChunks:
    """Delete from `indices` the chunks whose document is not in the restored MySQL (see the module docstring);
    what was (or, `dry_run`, would be) removed. MySQL that cannot be read raises before anything is deleted."""
    log = log or logging.getLogger("ragflow_backup.restore.search")
    search = settings.search
    outcome = StrayChunks(dry_run=dry_run)
    with classified(search):
        api = RestoreApi(clients.search_client(search), search.engine, search.repository)
        in_index = {index: chunk_documents(api, index, kb) for index in indices if not NOT_CHUNKS.search(index)}
        kbs = {pair[0] for pairs in in_index.values() for pair in pairs}
        known = documents_in_mysql(settings, kbs, database)  # before any delete: unreadable means none
        timeout = search.snapshot_timeout_seconds
        for index, pairs in in_index.items():
            gone = {pair: n for pair, n in pairs.items() if pair not in known}
            for kb_id in sorted({pair[0] for pair in gone}):
                docs = sorted(doc for k, doc in gone if k == kb_id)
                chunks = sum(n for (k, _), n in gone.items() if k == kb_id)
                outcome.per_kb[kb_id] = outcome.per_kb.get(kb_id, 0) + chunks
                outcome.per_index[index] = outcome.per_index.get(index, 0) + chunks
                outcome.documents.setdefault(kb_id, []).extend(docs)
                if dry_run:
                    continue
                for start in range(0, len(docs), DOC_BATCH):
                    query = {"bool": {"filter": [{"term": {"kb_id": kb_id}},
                                                 {"terms": {"doc_id": docs[start:start + DOC_BATCH]}}]}}
                    api.delete_matching(index, query, timeout)
                log.info("%s: %s %d chunks of %d documents of knowledge base %s gone from MySQL", index,
                         "would remove" if dry_run else "removed", chunks, len(docs), kb_id)
    return outcome
