"""After `restore --at T`, the search index comes from the newest snapshot before T while MySQL is replayed up
to T: the documents whose rows changed in between may have chunks that disagree with their rows. This lists
them from the restored MySQL (RAGFlow's `document.update_time`, milliseconds since the epoch, set by every
update through its models; see RAGFlow's api/db/db_models.py) and, when asked, marks them for RAGFlow to
parse again.

Not listed: a document deleted between the snapshot and T (its row is gone, its chunks are in the snapshot):
its chunks are removed after the restore instead (actors/search/stray_chunks.py).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from core import clients
from core.config import Settings

# What "parse again" means here: RAGFlow shows a document with run '0' (UNSTART) and progress 0 as not parsed,
# and its parse action (one click per document, or the knowledge base's bulk parse) deletes the document's
# chunks and queues new tasks. Setting run '1' instead would show it as running with no task queued for it
# (tasks live in Redis), so it would never finish. chunk_num and token_num stay: RAGFlow subtracts them from the
# knowledge base's totals when it clears the old chunks.
REPARSE_MESSAGE = "ragflow-backup restore --at: its chunks predate its row; parse it again"


@dataclass(frozen=True)
class ChangedDocument:
    id: str
    kb_id: str
    name: str
    updated_at: datetime


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def changed_documents(settings: Settings, since: datetime, until: datetime, kb: str | None = None,
                      database: str | None = None) -> list[ChangedDocument]:
    """Documents of the restored database (default mysql.database) whose row changed after `since` and at or
    before `until` (to the second), oldest change first."""
    low, high = int(since.timestamp() * 1000), int(until.timestamp()) * 1000 + 999
    sql = (f"SELECT id, kb_id, name, update_time FROM {_quoted(database or settings.mysql.database)}.`document` "
           f"WHERE update_time > %s AND update_time <= %s" + (" AND kb_id = %s" if kb else "")
           + " ORDER BY update_time, id")
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn, conn.cursor() as cur:
        cur.execute(sql, (low, high, kb) if kb else (low, high))
        rows = cur.fetchall()
    return [ChangedDocument(str(doc_id), str(kb_id), str(name or ""), datetime.fromtimestamp(int(ms) / 1000).astimezone())
            for doc_id, kb_id, name, ms in rows]


def mark_for_reparse(settings: Settings, ids: list[str], database: str | None = None) -> int:
    """Mark these documents not parsed (see REPARSE_MESSAGE's comment) in one transaction; the rows marked."""
    if not ids:
        return 0
    marked = 0
    table = f"{_quoted(database or settings.mysql.database)}.`document`"
    with contextlib.closing(clients.mysql_connection(settings.mysql, database="")) as conn:
        conn.begin()
        try:
            with conn.cursor() as cur:
                for start in range(0, len(ids), 500):
                    batch = ids[start:start + 500]
                    marked += cur.execute(f"UPDATE {table} SET run = '0', progress = 0, progress_msg = %s "
                                          f"WHERE id IN ({', '.join(['%s'] * len(batch))})", (REPARSE_MESSAGE, *batch))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return marked
