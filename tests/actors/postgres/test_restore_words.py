"""What `restore` prints for PostgreSQL: words and numbers, never a dataclass's repr."""
from __future__ import annotations

from actors.postgres.restore import KBRestoreResult, PostgresRestoreResult
from agent.restore_report import in_words


def test_a_postgres_restore_is_said_in_words_and_numbers():
    whole = PostgresRestoreResult("daily/2026-11-30", "rag_flow", {"document": 5, "task": 2},
                                  {"document": 5, "task": 2}, 1.0, previous_database="rag_flow__old_abc123")
    kb = KBRestoreResult("daily/2026-11-30", "rag_flow", "a" * 32, {"knowledgebase": 1, "document": 4},
                         {"knowledgebase": 1, "document": 4}, {"knowledgebase": 0, "document": 2}, 1.0)

    assert in_words("postgres", whole) == ("database rag_flow: 7 rows in 2 tables, as many rows as the backup "
                                           "counted; the database before is kept as rag_flow__old_abc123")
    assert in_words("postgres", kb) == (f"knowledge base {'a' * 32} in rag_flow: rows knowledgebase 1, document 4; "
                                        "2 removed first; as many rows as the backup counted")
