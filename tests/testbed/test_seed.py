"""The seeder writes a small, internally consistent RAGFlow into the real test bed, and removes it again."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import clients
from core.config import Settings, fill_secrets_from_ragflow_env
from core.ragflow_env import read_ragflow_env
from testbed import env as testbed_env_file
from testbed import settings as tb
from testbed.seed import GROUP, QUEUE, SECRET_KEY, Dataset, remove, seed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return testbed_env_file.load()


def _services(env: dict[str, str], database: str, engine: str = "elasticsearch", redis_db: int | None = None) -> dict[str, Any]:
    return {
        "mysql": tb.mysql(env, database=database), "minio": tb.minio(env), "search": tb.search(engine, env),
        "redis": tb.redis(env, db=redis_db) if redis_db is not None else None,
    }


@pytest.fixture
def seeded(env, redis_db) -> Iterator[Callable[..., Dataset]]:
    """`seeded(engine=..., redis=..., seed_value=...)` seeds a tiny RAGFlow into a database of its own; every seed
    (and anything handed to `seeded.keep`) is removed afterwards, whatever the test did."""
    made: list[tuple[Dataset, dict[str, Any]]] = []

    def make(engine: str = "elasticsearch", redis: bool = False, seed_value: int = 0) -> Dataset:
        database = f"seed_test_{uuid.uuid4().hex[:8]}"
        # Redis goes to a DB of this test's own, standing in for RAGFlow's DB 1.
        services = _services(env, database, engine, redis_db if redis else None)
        dataset = seed(database=database, size="tiny", seed=seed_value, **services)
        made.append((dataset, services))
        return dataset

    make.keep = lambda dataset, services: made.append((dataset, services))  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        failures = []
        for dataset, services in made:
            try:
                remove(dataset, **services)
            except Exception as exc:  # noqa: BLE001 - remove the others, then report
                failures.append(exc)
        if failures:
            raise failures[0]


def _rows(env: dict[str, str], database: str, sql: str) -> list[dict[str, Any]]:
    import pymysql

    with clients.mysql_connection(tb.mysql(env, database=database), cursorclass=pymysql.cursors.DictCursor) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())


def _chunks(env: dict[str, str], dataset: Dataset, engine: str = "elasticsearch") -> list[dict[str, Any]]:
    client = clients.search_client(tb.search(engine, env))
    hits = []
    for index in dataset.indices:
        resp = client.search(index=index, body={"query": {"match_all": {}}, "size": 1000})
        hits += [{"_id": hit["_id"], **hit["_source"]} for hit in resp["hits"]["hits"]]
    return hits


def test_every_document_location_points_at_a_real_object(seeded, env):
    dataset = seeded()
    minio = clients.minio_client(tb.minio(env))
    documents = _rows(env, dataset.database, "SELECT id, kb_id, location, size, thumbnail FROM document")
    assert sorted(d["id"] for d in documents) == sorted(dataset.doc_ids)
    for doc in documents:
        data = minio.get_object(doc["kb_id"], doc["location"]).read()
        assert len(data) == doc["size"]
        assert sha256(data).hexdigest() == dataset.objects[doc["kb_id"]][doc["location"]]
        if doc["thumbnail"] and doc["thumbnail"].startswith("thumbnail_"):
            assert minio.stat_object(doc["kb_id"], doc["thumbnail"]).content_type == "image/png"
    # File-manager rows mirror the documents' locations, and uploads sit in the bucket named by their folder.
    linked = _rows(env, dataset.database, "SELECT f.location, d.location AS doc_location FROM file f "
                   "JOIN file2document fd ON fd.file_id = f.id JOIN document d ON d.id = fd.document_id")
    assert len(linked) == len(documents) and all(r["location"] == r["doc_location"] for r in linked)
    uploads = _rows(env, dataset.database, "SELECT parent_id, location, size FROM file "
                    "WHERE type != 'folder' AND source_type = ''")
    assert uploads
    for row in uploads:
        assert row["parent_id"] in dataset.buckets
        assert minio.stat_object(row["parent_id"], row["location"]).size == row["size"]
    sizes = {len(minio.get_object(b, n).read()) for b, names in dataset.objects.items() for n in names}
    assert len(sizes) > 5 and min(sizes) < 16 * 1024  # mixed sizes, not one repeated blob


def test_chunks_refer_to_seeded_documents_and_knowledge_bases(seeded, env):
    dataset = seeded()
    documents = {d["id"]: d for d in _rows(env, dataset.database, "SELECT * FROM document")}
    chunks = _chunks(env, dataset)
    assert len(chunks) == sum(dataset.doc_counts.values()) == sum(d["chunk_num"] for d in documents.values())
    for chunk in chunks:
        doc = documents[chunk["doc_id"]]
        assert chunk["kb_id"] == doc["kb_id"] and chunk["docnm_kwd"] == doc["name"]
        assert chunk["available_int"] == 1 and len(chunk["q_8_vec"]) == 8
    per_doc = Counter(chunk["doc_id"] for chunk in chunks)
    assert all(per_doc[doc_id] == doc["chunk_num"] for doc_id, doc in documents.items())
    for kb in _rows(env, dataset.database, "SELECT * FROM knowledgebase"):
        docs = [d for d in documents.values() if d["kb_id"] == kb["id"]]
        assert kb["doc_num"] == len(docs) and kb["chunk_num"] == sum(d["chunk_num"] for d in docs)
        assert kb["token_num"] == sum(d["token_num"] for d in docs)
        assert f"ragflow_{kb['tenant_id']}" in dataset.indices


def test_row_counts_and_unicode_text_come_back_from_the_database(seeded, env):
    dataset = seeded()
    for table, count in dataset.row_counts.items():
        assert _rows(env, dataset.database, f"SELECT COUNT(*) AS n FROM `{table}`")[0]["n"] == count > 0
    kbs = _rows(env, dataset.database, "SELECT name, description, parser_config FROM knowledgebase")
    assert all("知识库" in kb["name"] and "📚" in kb["name"] for kb in kbs)
    assert all("O'Reilly \"quoted\"" in kb["description"] and "\n" in kb["description"] for kb in kbs)
    assert all(json.loads(kb["parser_config"])["chunk_token_num"] == 128 for kb in kbs)


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_seeds_opensearch_as_well_as_elasticsearch(seeded, env, engine):
    dataset = seeded(engine=engine)
    client = clients.search_client(tb.search(engine, env))
    for index, count in dataset.doc_counts.items():
        assert client.count(index=index)["count"] == count == 24
        # RAGFlow's own index shape (testbed/ragflow_indices.py): its settings and dynamic templates.
        settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("2", "0")
        fields = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
        assert fields["content_ltks"]["analyzer"] == "whitespace" and fields["kb_id"]["type"] == "keyword"
        assert fields["page_num_int"]["type"] == "integer" and fields["create_time"]["type"] == "date"
    assert {c["doc_id"] for c in _chunks(env, dataset, engine)} == set(dataset.doc_ids)


@pytest.mark.parametrize("layout, nginx, published_mysql_port", [
    ("v0.27", "nginx/ragflow.conf.python", "EXPOSE_MYSQL_PORT"), ("v0.20", "nginx/ragflow.conf", "MYSQL_PORT")])
def test_writes_a_ragflow_docker_folder_whose_env_carries_the_testbed_credentials(env, tmp_path, layout, nginx,
                                                                                  published_mysql_port):
    folder = tmp_path / "docker"
    dataset = seed(ragflow_dir=folder, env=env, layout=layout)  # no services: only the folder is written
    assert dataset.ragflow_dir == folder and not dataset.buckets and not dataset.row_counts
    for name in ("docker-compose.yml", "docker-compose-base.yml", "service_conf.yaml.template",
                 nginx, "entrypoint.sh", "init.sql"):
        assert (folder / name).read_text().strip()
    for name in ("docker-compose.yml", "docker-compose-base.yml", "service_conf.yaml.template"):
        assert isinstance(yaml.safe_load((folder / name).read_text()), dict), name
    services = yaml.safe_load((folder / "docker-compose-base.yml").read_text())["services"]
    assert {"mysql", "minio", "redis", "es01"} <= set(services)
    values = read_ragflow_env(folder)
    assert values["DOC_ENGINE"] == "elasticsearch"
    assert values["MYSQL_PASSWORD"] == env["MYSQL_PASSWORD"] and values[published_mysql_port] == env["MYSQL_PORT"]
    assert values["MINIO_USER"] == env["MINIO_ACCESS_KEY"] and values["MINIO_PASSWORD"] == env["MINIO_SECRET_KEY"]
    assert values["ELASTIC_PASSWORD"] == env["ES_PASSWORD"] and values["REDIS_PASSWORD"] == env["REDIS_PASSWORD"]
    # Our config takes its secrets from this .env, and with them reaches the test bed's services.
    settings = Settings(ragflow_dir=folder)
    fill_secrets_from_ragflow_env(settings)
    settings.mysql.host, settings.mysql.user = env["MYSQL_HOST"], env["MYSQL_USER"]
    settings.mysql.port = int(values[published_mysql_port])
    with clients.mysql_connection(settings.mysql, database="") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    settings.minio.endpoint = f"{env['MINIO_ENDPOINT'].split(':')[0]}:{values['MINIO_PORT']}"
    clients.minio_client(settings.minio).list_buckets()
    settings.redis.host, settings.redis.port = env["REDIS_HOST"], int(values["REDIS_PORT"])
    assert clients.redis_client(settings.redis).ping()


def test_redis_db_holds_the_secret_key_and_a_task_stream(seeded, env, redis_db):
    dataset = seeded(redis=True)
    assert dataset.redis_db == redis_db
    client = clients.redis_client(tb.redis(env, db=redis_db))
    assert len(client.get(SECRET_KEY) or b"") >= 32
    entries = dict(client.xrange(QUEUE))
    ours = [json.loads(entries[e.encode()][b"message"]) for e in dataset.stream_entries]
    assert len(ours) == 3 and all(message["doc_id"] in dataset.doc_ids for message in ours)
    tasks = {r["id"] for r in _rows(env, dataset.database, "SELECT id FROM task")}
    assert {message["id"] for message in ours} <= tasks
    assert GROUP.encode() in {group["name"] for group in client.xinfo_groups(QUEUE)}
    caches = [key for key in dataset.redis_keys if key.startswith("ragflow:cache:")]
    assert caches and all(0 < client.ttl(key) <= 3600 for key in caches)


def test_two_seeds_never_collide(seeded):
    with ThreadPoolExecutor(2) as pool:  # concurrently, and with the same seed: the worst case
        first, second = pool.map(lambda _: seeded(), range(2))
    for attribute in ("tenant_ids", "kb_ids", "doc_ids", "buckets", "indices"):
        assert not set(getattr(first, attribute)) & set(getattr(second, attribute)), attribute
    assert first.database != second.database
    assert first.row_counts == second.row_counts
    assert sorted(first.doc_counts.values()) == sorted(second.doc_counts.values())
    # The same seed still makes the same bytes: only names differ.
    assert sorted(d for b in first.objects.values() for d in b.values()) == sorted(
        d for b in second.objects.values() for d in b.values())
    third = seeded(seed_value=1)
    assert set(third.objects[third.kb_ids[0]].values()) != set(first.objects[first.kb_ids[0]].values())


def test_remove_leaves_nothing_behind(env, redis_db):
    database = f"seed_test_{uuid.uuid4().hex[:8]}"
    services = _services(env, database, redis_db=redis_db)
    dataset = seed(database=database, **services)
    try:
        remove(dataset, **services)
        assert not _rows(env, "", f"SHOW DATABASES LIKE '{database}'")
        minio = clients.minio_client(tb.minio(env))
        assert not [bucket for bucket in dataset.buckets if minio.bucket_exists(bucket)]
        search = clients.search_client(services["search"])
        assert not [index for index in dataset.indices if search.indices.exists(index=index)]
        redis = clients.redis_client(services["redis"])
        assert not [key for key in dataset.redis_keys if key != QUEUE and redis.exists(key)]
        left = {entry.decode() for entry, _ in redis.xrange(QUEUE)} if redis.exists(QUEUE) else set()
        assert not left & set(dataset.stream_entries)
    finally:
        remove(dataset, **services)  # idempotent: a second pass finds nothing to do


def test_the_cli_seeds_the_testbed_and_prints_a_summary(seeded, env, tmp_path):
    database = f"seed_test_{uuid.uuid4().hex[:8]}"
    services = _services(env, database)
    run = subprocess.run(
        [sys.executable, "-m", "testbed.seed", "--size", "tiny", "--database", database, "--ragflow-dir",
         str(tmp_path), "--redis-db", "-1"], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    # The seed's names are all in its database: knowledge bases and upload folders are buckets, tenants indices.
    kbs = [r["id"] for r in _rows(env, database, "SELECT id FROM knowledgebase")]
    folders = [r["parent_id"] for r in _rows(env, database, "SELECT DISTINCT parent_id FROM file "
                                              "WHERE type != 'folder' AND source_type = ''")]
    tenants = [r["id"] for r in _rows(env, database, "SELECT id FROM tenant")]
    seeded.keep(Dataset(database, tenants, kbs, [], kbs + folders, {}, [f"ragflow_{t}" for t in tenants], {}, {},
                        None, tmp_path), services)
    assert run.returncode == 0, run.stderr
    summary = run.stdout.strip()
    assert "\n" not in summary and database in summary
    assert "40 rows" in summary and "3 MinIO buckets holding 12 objects" in summary and "24 chunks" in summary
    assert "Redis skipped" in summary and (tmp_path / ".env").is_file()


def test_the_v027_folder_is_ragflow_v027s_own_layout(env, tmp_path):
    folder = tmp_path / "docker"
    seed(ragflow_dir=folder, env=env)
    values = read_ragflow_env(folder)
    assert values["RAGFLOW_IMAGE"] == "infiniflow/ragflow:v0.27.0" and values["MYSQL_PORT"] == "3306"
    assert (values["DB_TYPE"], values["COMPOSE_PROFILES"]) == ("mysql", "elasticsearch,cpu,metadata-mysql")
    compose = yaml.safe_load((folder / "docker-compose.yml").read_text())
    assert {"ragflow-cpu", "ragflow-gpu"} <= set(compose["services"])
    base = yaml.safe_load((folder / "docker-compose-base.yml").read_text())["services"]
    assert base["mysql"]["ports"] == ["${EXPOSE_MYSQL_PORT}:3306"]
    assert "volatile-lru" in base["redis"]["command"]  # Valkey 8: evicts only keys with a TTL


def test_tables_have_ragflow_v027s_columns_where_per_kb_restore_reads_them(seeded, env):
    dataset = seeded()
    columns: dict[str, set[str]] = {}
    for row in _rows(env, dataset.database, "SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS "
                                            "WHERE TABLE_SCHEMA = DATABASE()"):
        columns.setdefault(row["t"], set()).add(row["c"])
    assert {"process_duration", "suffix", "content_hash", "pipeline_id"} <= columns["document"]
    assert "process_duation" not in columns["document"] | columns["task"]  # renamed by v0.27's migrate_db()
    assert {"tenant_embd_id", "pipeline_id", "wiki_task_id", "structure_task_finish_at"} <= columns["knowledgebase"]
    assert {"tenant_llm_id", "tenant_ocr_id", "ocr_id", "public_key"} <= columns["tenant"]
    assert "color_schema" in columns["user"] and "process_duration" in columns["task"]
    assert columns["system_settings"] >= {"name", "source", "data_type", "value"}
    sizes = _rows(env, dataset.database, "SELECT TABLE_NAME AS t, DATA_TYPE AS d FROM information_schema.COLUMNS WHERE "
                                         "TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'size'")
    assert {row["t"]: row["d"] for row in sizes} == {"document": "bigint", "file": "bigint"}
    suffixes = {r["suffix"] for r in _rows(env, dataset.database, "SELECT suffix FROM document")}
    assert suffixes == {"pdf", "docx", "txt"}
    assert dataset.row_counts["system_settings"] == 2
