"""What `restore` prints per component: words and numbers, never a dataclass's repr."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from actors.config.restore import ConfigRestoreResult
from actors.minio.restore import MinioRestoreResult, RestorePlan
from actors.mysql.restore import KBRestoreResult as MySQLKBResult
from actors.mysql.restore import MySQLRestoreResult
from actors.search.restore import KBRestoreResult as SearchKBResult
from actors.search.restore import SearchRestoreResult
from agent.restore_report import in_words

AT = datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc)


def test_each_component_s_restore_is_said_in_words_and_numbers():
    config = ConfigRestoreResult("daily/2026-11-24 config_backup.tar.gz", Path("/opt/ragflow/docker"), False,
                                 written=[".env"], unchanged=["a.yml", "b.yml"], expected=3, found=3)
    mysql = MySQLRestoreResult("daily/2026-11-24", "rag_flow", {"document": 5, "task": 2}, {"document": 5, "task": 2},
                               1.0, stored_code=["TRIGGER t"])
    mysql_kb = MySQLKBResult("daily/2026-11-24", "rag_flow", "a" * 32, {"knowledgebase": 1, "document": 4},
                             {"knowledgebase": 1, "document": 4}, {"knowledgebase": 1, "document": 6}, 1.0)
    search = SearchRestoreResult("snap-1", {"ragflow_t": "ragflow_t"}, {"ragflow_t": 120}, {"ragflow_t": 120}, 1.0, True)
    search_kb = SearchKBResult("a" * 32, "snap-1", {"ragflow_t": 40}, {"ragflow_t": 40}, {"ragflow_t": 38})
    minio = MinioRestoreResult(AT, RestorePlan(AT, "minio:9000"), False, created_buckets=["kb"], put=3, removed=1,
                               bytes_written=3 << 20, expected={"kb": 10}, found={"kb": 9}, problems=["kb/x missing"])

    assert in_words("config", config) == ("1 file written, 2 unchanged in /opt/ragflow/docker; 3 of 3 checked")
    assert in_words("mysql", mysql) == ("database rag_flow: 7 rows in 2 tables, as many rows as the backup counted; "
                                        "1 trigger/routine/view re-created")
    assert in_words("mysql", mysql_kb) == (f"knowledge base {'a' * 32} in rag_flow: rows knowledgebase 1, document 4; "
                                           "7 removed first; as many rows as the backup counted")
    assert in_words("search", search) == ("1 index from snapshot snap-1 (live names): 120 documents, as many "
                                          "documents as the backup counted")
    assert in_words("search", search_kb) == (f"knowledge base {'a' * 32}: 40 chunks in 1 index from snapshot snap-1 "
                                             "(38 replaced); as many chunks as the backup counted")
    said = in_words("minio", minio)
    assert said.startswith("objects as at 2026-11-24T10:30:00+00:00: 3 put (3.0 MiB), 1 removed, 1 bucket created; ")
    assert "MISMATCH (kb: 9 found, 10 expected)" in said and "problems: kb/x missing" in said
    assert in_words("redis", 12) == "12 keys restored with their TTLs"
    assert "Result(" not in " ".join(in_words(n, r) for n, r in [("config", config), ("minio", minio)])
