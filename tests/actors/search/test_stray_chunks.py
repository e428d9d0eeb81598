"""Removing the chunks of documents the restored MySQL does not have, on the real MariaDB and both engines."""
from __future__ import annotations

from typing import Any

import pytest

from actors.search.stray_chunks import remove_stray_chunks
from core import clients
from core.config import Settings
from testbed import settings as tb

# index -> kb -> doc -> chunks
CHUNKS = {"t1": {"kb_a": {"doc_a1": 3, "doc_a2": 2}, "kb_b": {"doc_b1": 2}}, "t2": {"kb_c": {"doc_c1": 1}}}
IN_MYSQL = {("kb_a", "doc_a1"), ("kb_b", "doc_b1")}  # doc_a2 and doc_c1 were deleted


class Bed:
    def __init__(self, settings: Settings, prefix: str):
        self.settings, self.prefix = settings, prefix
        self.client = clients.search_client(settings.search)
        self.es = settings.search.engine == "elasticsearch"

    def index(self, tenant: str) -> str:
        return f"{self.prefix}ragflow_{tenant}"

    def chunks(self, index: str) -> dict[str, int]:
        """doc_id -> chunks in the index."""
        self.client.indices.refresh(index=index)
        query: dict[str, Any] = {"match_all": {}}
        body = (self.client.search(index=index, query=query, size=1000) if self.es else
                self.client.search(index=index, body={"query": query, "size": 1000}))
        found: dict[str, int] = {}
        for hit in body["hits"]["hits"]:
            found[hit["_source"]["doc_id"]] = found.get(hit["_source"]["doc_id"], 0) + 1
        return found


@pytest.fixture
def bed(search_settings, index_prefix, mysql_database, testbed_env) -> Bed:
    settings = Settings(storage_root="/nonexistent", mysql=tb.mysql(testbed_env, database=mysql_database),
                        search=search_settings)
    made = Bed(settings, index_prefix)
    mappings = {"properties": {"kb_id": {"type": "keyword"}, "doc_id": {"type": "keyword"},
                               "content_with_weight": {"type": "text"}}}
    for tenant, kbs in CHUNKS.items():
        index = made.index(tenant)
        if made.es:
            made.client.indices.create(index=index, mappings=mappings, settings={"number_of_replicas": 0})
        else:
            made.client.indices.create(index=index, body={"mappings": mappings, "settings": {"number_of_replicas": 0}})
        for kb, docs in kbs.items():
            for doc, n in docs.items():
                for i in range(n):
                    chunk = {"kb_id": kb, "doc_id": doc, "content_with_weight": f"{doc} {i}"}
                    if made.es:
                        made.client.index(index=index, id=f"{doc}-{i}", document=chunk)
                    else:
                        made.client.index(index=index, id=f"{doc}-{i}", body=chunk)
        made.client.indices.refresh(index=index)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE document (id VARCHAR(32) PRIMARY KEY, kb_id VARCHAR(256))")
        cur.executemany("INSERT INTO document VALUES (%s, %s)", [(doc, kb) for kb, doc in IN_MYSQL])
        conn.commit()
    return made


def test_the_chunks_of_documents_gone_from_mysql_are_removed_and_counted_per_knowledge_base(bed):
    stray = remove_stray_chunks(bed.settings, [bed.index("t1"), bed.index("t2")])

    assert stray.per_kb == {"kb_a": 2, "kb_c": 1}
    assert stray.documents == {"kb_a": ["doc_a2"], "kb_c": ["doc_c1"]}
    assert bed.chunks(bed.index("t1")) == {"doc_a1": 3, "doc_b1": 2}
    assert bed.chunks(bed.index("t2")) == {}


def test_an_index_the_restore_did_not_restore_is_never_touched(bed):
    stray = remove_stray_chunks(bed.settings, [bed.index("t1")])

    assert stray.per_kb == {"kb_a": 2}
    assert bed.chunks(bed.index("t2")) == {"doc_c1": 1}


def test_a_knowledge_base_restore_removes_only_that_knowledge_bases_chunks(bed):
    with clients.mysql_connection(bed.settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM document WHERE id = 'doc_b1'")
        conn.commit()

    stray = remove_stray_chunks(bed.settings, [bed.index("t1")], kb="kb_b")

    assert stray.per_kb == {"kb_b": 2}
    assert bed.chunks(bed.index("t1")) == {"doc_a1": 3, "doc_a2": 2}


def test_a_dry_run_lists_what_would_be_removed_and_removes_nothing(bed):
    stray = remove_stray_chunks(bed.settings, [bed.index("t1"), bed.index("t2")], dry_run=True)

    assert stray.dry_run and stray.per_kb == {"kb_a": 2, "kb_c": 1}
    assert stray.per_index == {bed.index("t1"): 2, bed.index("t2"): 1}
    assert bed.chunks(bed.index("t1")) == {"doc_a1": 3, "doc_a2": 2, "doc_b1": 2}


def test_a_mysql_that_cannot_be_read_means_nothing_is_removed(bed):
    unreadable = bed.settings.model_copy(update={"mysql": bed.settings.mysql.model_copy(update={"database": "t_missing_db"})})

    with pytest.raises(Exception, match="t_missing_db"):
        remove_stray_chunks(unreadable, [bed.index("t1"), bed.index("t2")])

    assert bed.chunks(bed.index("t1")) == {"doc_a1": 3, "doc_a2": 2, "doc_b1": 2}
    assert bed.chunks(bed.index("t2")) == {"doc_c1": 1}
