"""Synthetic RAGFlow data for tests and the demo: MySQL rows, MinIO objects, search chunks, Redis keys, docker/ files.

Shapes follow RAGFlow's api/db/db_models.py closely enough that backing them up takes the paths a real deployment
does: utf8mb4 text (with 4-byte emoji), JSON longtext, 32-hex buckets, one index per tenant, a Redis stream with a
consumer group. Object bytes are reproducible from `seed`; ids also mix in a uuid4 per call, so two seeds (even
concurrent, even with the same seed) never share a bucket, index or row id.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import math
import random
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.clients import minio_client, mysql_connection, redis_client, search_client
from testbed import ragflow_indices

if TYPE_CHECKING:
    from core.config import MinioSettings, MySQLSettings, RedisSettings, SearchSettings

KiB, MiB = 1024, 1024 * 1024
SECRET_KEY = "ragflow:system:secret_key"
QUEUE, GROUP = "rag_flow_svr_queue", "rag_flow_svr_task_broker"
_SAFE_DB = re.compile(r"[A-Za-z0-9_$]{1,64}")


@dataclass
class SeedSize:
    tenants: int
    kbs_per_tenant: int
    docs_per_kb: int
    chunks_per_doc: int
    min_object_bytes: int
    max_object_bytes: int


SIZES: dict[str, SeedSize] = {
    "tiny": SeedSize(1, 2, 3, 4, 1 * KiB, 64 * KiB),
    "small": SeedSize(2, 3, 10, 10, 1 * KiB, 1 * MiB),
    "bench": SeedSize(4, 5, 200, 20, 1 * KiB, 2 * MiB),
}


@dataclass
class Dataset:
    database: str
    tenant_ids: list[str]
    kb_ids: list[str]
    doc_ids: list[str]
    buckets: list[str]
    objects: dict[str, dict[str, str]]  # bucket -> {object name: sha256 hex}
    indices: list[str]
    row_counts: dict[str, int]  # rows this call inserted, per table
    doc_counts: dict[str, int]
    redis_db: int | None
    ragflow_dir: Path | None
    redis_keys: list[str] = field(default_factory=list)  # keys this call created; remove() deletes only these
    stream_entries: list[str] = field(default_factory=list)  # entry ids this call added to QUEUE


@dataclass
class _Object:
    size: int
    key: int  # seeds the bytes: content depends on `seed` and position only
    content_type: str | None
    magic: bytes


@dataclass
class Plan:
    """Everything one seed() writes, decided before any write so a failed seed knows what to remove."""
    seed: int
    rows: dict[str, list[dict[str, Any]]]
    objects: dict[str, dict[str, _Object]] = field(default_factory=dict)
    chunks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    cache: list[tuple[str, dict[str, str], int]] = field(default_factory=list)  # key, hash fields, TTL s
    secret: str = ""

    def ids(self, table: str, column: str = "id") -> list[str]:
        return [row[column] for row in self.rows[table]]


# Columns as name:type, a bare number n meaning varchar(n); every table also gets RAGFlow's four timestamps.
# RAGFlow v0.27's columns (api/db/db_models.py after migrate_db()), in its order, for the tables seeded here.
_TASKS = " ".join(f"{kind}_task_id:32 {kind}_task_finish_at:datetime" for kind in (
    "graphrag", "raptor", "mindmap", "wiki", "skill", "structure_graph", "structure_mindmap", "timeline",
    "session_graph", "session_essence", "structure"))
TABLES: dict[str, str] = {
    "tenant": "id:32 name:100 public_key:255 llm_id:128 tenant_llm_id:32 embd_id:128 tenant_embd_id:32 asr_id:128 "
              "tenant_asr_id:32 img2txt_id:128 tenant_img2txt_id:32 rerank_id:128 tenant_rerank_id:32 tts_id:256 "
              "tenant_tts_id:32 ocr_id:256 tenant_ocr_id:32 parser_ids:256 credit:int status:1",
    "user": "id:32 access_token:255 nickname:100 password:255 email:255 avatar:text language:32 color_schema:32 "
            "timezone:64 last_login_time:datetime is_authenticated:1 is_active:1 is_anonymous:1 login_channel:255 "
            "status:1 is_superuser:tinyint(1)",
    "user_tenant": "id:32 user_id:32 tenant_id:32 role:32 invited_by:32 status:1",
    "knowledgebase": "id:32 avatar:text tenant_id:32 name:128 language:32 description:text embd_id:128 "
                     "tenant_embd_id:32 permission:16 created_by:32 doc_num:int token_num:int chunk_num:int "
                     "similarity_threshold:float vector_similarity_weight:float parser_id:32 pipeline_id:32 "
                     f"parser_config:longtext pagerank:int {_TASKS} status:1",
    "document": "id:32 thumbnail:text kb_id:256 parser_id:32 pipeline_id:32 parser_config:longtext source_type:128 "
                "type:32 created_by:32 name:255 location:255 size:bigint token_num:int chunk_num:int progress:float "
                "progress_msg:text process_begin_at:datetime process_duration:float suffix:32 content_hash:32 run:1 "
                "status:1",
    "file": "id:32 parent_id:32 tenant_id:32 created_by:32 name:255 location:255 size:bigint type:32 "
            "source_type:128",
    "file2document": "id:32 file_id:32 document_id:32",
    "task": "id:32 doc_id:32 from_page:int to_page:int task_type:32 priority:int begin_at:datetime "
            "process_duration:float progress:float progress_msg:text retry_count:int digest:text chunk_ids:longtext",
    "api_token": "tenant_id:32 token:255 dialog_id:32 source:16 beta:255",
    "dialog": "id:32 tenant_id:32 name:255 description:text icon:text language:32 llm_id:128 tenant_llm_id:32 "
              "llm_setting:longtext prompt_type:16 prompt_config:longtext meta_data_filter:longtext "
              "similarity_threshold:float vector_similarity_weight:float top_n:int top_k:int do_refer:1 "
              "rerank_id:128 tenant_rerank_id:32 kb_ids:longtext status:1",
    # Instance-wide settings (RAGFlow loads conf/system_settings.json into it); RAGFlow keeps no version here.
    "system_settings": "name:128 source:32 data_type:32 value:longtext",
}
_STAMPS = " create_time:bigint create_date:datetime update_time:bigint update_date:datetime"
PRIMARY_KEYS = {"api_token": "tenant_id, token", "system_settings": "name"}
SHARED = {"system_settings"}  # one set per database: a second seed into it keeps the rows there
INDEXED = {"knowledgebase": ["tenant_id"], "document": ["kb_id"], "file": ["parent_id", "tenant_id"],
            "file2document": ["file_id", "document_id"], "task": ["doc_id"], "user_tenant": ["user_id", "tenant_id"]}
_WORDS = ("retrieval augmented generation chunk embedding vector tenant knowledge base document parser backup "
          "restore snapshot bucket index 知识库 检索 文档 résumé naïve Ünïcode façade 📚 données").split()
_DOC_TYPES = [("pdf", "pdf", "application/pdf", b"%PDF-1.7\n"), ("docx", "doc", None, b"PK\x03\x04"),
              ("txt", "doc", "text/plain; charset=utf-8", b""), ("md", "doc", None, b"# ")]
_PNG = b"\x89PNG\r\n\x1a\n"
_MODELS = {"llm_id": "qwen-plus@Tongyi-Qianwen", "embd_id": "BAAI/bge-large-zh-v1.5@BAAI",
           "asr_id": "paraformer-realtime-8k-v1@Tongyi-Qianwen", "img2txt_id": "qwen-vl-max@Tongyi-Qianwen",
           "rerank_id": "BAAI/bge-reranker-v2-m3@BAAI"}


def table_columns(table: str) -> list[tuple[str, str]]:
    pairs = [item.split(":", 1) for item in (TABLES[table] + _STAMPS).split()]
    return [(name, f"varchar({kind})" if kind.isdigit() else kind) for name, kind in pairs]


def make_plan(size: SeedSize, seed: int) -> Plan:
    rng = random.Random(seed)
    salt = uuid.uuid4().int  # per call: ids stay unique even for equal seeds run side by side
    clock = 1_700_000_000_000 + rng.randrange(10**9)  # ms since the epoch, like RAGFlow's create_time
    keys = iter(range(10**9))
    plan = Plan(seed, {table: [] for table in TABLES}, secret=f"{rng.getrandbits(256):064x}")
    parser_config = json.dumps({"chunk_token_num": 128, "delimiter": "\\n!?;。；！？", "layout_recognize": "DeepDOC",
                                "raptor": {"use_raptor": False}, "pages": [[1, 1000000]]}, ensure_ascii=False)
    when = datetime(2024, 5, 2, 9, 0)

    def new_id() -> str:
        return f"{rng.getrandbits(128) ^ salt:032x}"

    def add(table: str, **row: Any) -> dict[str, Any]:
        nonlocal clock
        clock += rng.randrange(1_000, 60_000)
        date = datetime.fromtimestamp(clock // 1000, timezone.utc).replace(tzinfo=None)
        row.update(create_time=clock, create_date=date, update_time=clock, update_date=date)
        plan.rows[table].append(row)
        return row

    def obj(bucket: str, name: str, lo: int, hi: int, content_type: str | None = None, magic: bytes = b"") -> int:
        # Log-uniform sizes: mostly small files and a few large ones, like a real upload history.
        n = max(int(math.exp(rng.uniform(math.log(lo), math.log(hi)))), len(magic))
        plan.objects.setdefault(bucket, {})[name] = _Object(n, next(keys), content_type, magic)
        return n

    def file(tid: str, parent: str | None, name: str, kind: str = "folder", size_: int = 0, source: str = "") -> str:
        fid = new_id()
        add("file", id=fid, parent_id=parent or fid, tenant_id=tid, created_by=tid, name=name,
            location="" if kind == "folder" else name, size=size_, type=kind, source_type=source)
        return fid

    def text(words: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(words))

    for name, data_type, value in (("default_role", "string", "normal"), ("enable_whitelist", "bool", "false")):
        add("system_settings", name=name, source="variable", data_type=data_type, value=value)
    lo, hi = size.min_object_bytes, size.max_object_bytes
    for t in range(size.tenants):
        tid, nickname = new_id(), f"Zoë Müller-{t}"  # RAGFlow gives the owner's user and tenant the same id
        add("user", id=tid, access_token=new_id(), nickname=nickname, password=f"scrypt:32768:8:1${new_id()}",
            email=f"zoe{t}.{tid[:6]}@example.com", language="English", timezone="UTC+8\tAsia/Shanghai",
            avatar="data:image/png;base64," + base64.b64encode(_PNG + rng.randbytes(48)).decode(),
            last_login_time=when, is_authenticated="1", is_active="1", is_anonymous="0", login_channel="password",
            status="1", is_superuser=int(t == 0), color_schema="Bright")
        add("tenant", id=tid, name=f"{nickname}‘s Kingdom", parser_ids="naive:General,qa:Q&A,book:Book",
            credit=512, status="1", **_MODELS)
        add("user_tenant", id=new_id(), user_id=tid, tenant_id=tid, role="owner", invited_by=tid, status="1")
        root = file(tid, None, "/")
        kb_root = file(tid, root, ".knowledgebase", source="knowledgebase")
        folder = file(tid, root, "资料 Docs")  # file-manager uploads live in a bucket named by their folder's id
        for name, kind, ctype, magic in (("notes-é.txt", "doc", "text/plain", b""), ("diagram.png", "visual",
                                                                                       "image/png", _PNG)):
            file(tid, folder, name, kind, obj(folder, name, lo, hi, ctype, magic))
        index, tenant_kbs = f"ragflow_{tid}", []
        plan.chunks[index] = []
        for k in range(size.kbs_per_tenant):
            kb_id = new_id()
            tenant_kbs.append(kb_id)
            kb = add("knowledgebase", id=kb_id, tenant_id=tid, name=f"知识库 {t}.{k} – Ünïcode 📚", language="English",
                     description="O'Reilly \"quoted\" notes,\nover two lines; 50% off \\o/", embd_id=_MODELS["embd_id"],
                     permission=("me", "team")[k % 2], created_by=tid, doc_num=0, token_num=0, chunk_num=0,
                     similarity_threshold=0.2, vector_similarity_weight=0.3, parser_id="naive",
                     parser_config=parser_config, pagerank=0, status="1", avatar=None)
            kb_folder = file(tid, kb_root, kb["name"], source="knowledgebase")
            for d in range(size.docs_per_kb):
                doc_id = new_id()
                ext, kind, ctype, magic = _DOC_TYPES[d % len(_DOC_TYPES)]
                name = f"报告 {k}-{d} Résumé.{ext}"  # RAGFlow keeps the upload's name as the object name
                n = obj(kb_id, name, lo, hi, ctype, magic)
                thumbnail = f"thumbnail_{doc_id}.png" if d % 2 == 0 else None
                if thumbnail:
                    obj(kb_id, thumbnail, 256, 8 * KiB, "image/png", _PNG)
                chunk_ids, tokens = [], 0
                for j in range(size.chunks_per_doc):
                    cid, words = new_id(), rng.randrange(20, 80)
                    body = text(words)
                    chunk_ids.append(cid)
                    tokens += words
                    plan.chunks[index].append({
                        "id": cid, "kb_id": kb_id, "doc_id": doc_id, "docnm_kwd": name, "title_tks": name.lower(),
                        "content_with_weight": body, "content_ltks": body.lower(), "page_num_int": [j + 1],
                        "important_kwd": [rng.choice(_WORDS), rng.choice(_WORDS)], "available_int": 1,
                        "create_time": str(kb["create_date"]), "create_timestamp_flt": clock / 1000 + j,
                        "q_8_vec": [round(rng.uniform(0.01, 1.0), 6) for _ in range(8)]})
                add("document", id=doc_id, thumbnail=thumbnail, kb_id=kb_id, parser_id="naive",
                    parser_config=parser_config, source_type="local", type=kind, created_by=tid, name=name,
                    location=name, size=n, token_num=tokens, chunk_num=size.chunks_per_doc, progress=1.0,
                    progress_msg="Page(1~100000001): Finish parsing.\nIndexing done.", run="3", status="1",
                    # FLOAT columns: MariaDB's mysqldump prints 6 significant digits; keep seeded
                    # values within that so restores can be compared bit for bit (CHECKSUM TABLE).
                    process_begin_at=when, process_duration=round(rng.uniform(1, 60), 3), suffix=ext,
                    content_hash=f"{rng.getrandbits(128):032x}")
                add("file2document", id=new_id(), document_id=doc_id,
                    file_id=file(tid, kb_folder, name, kind, n, "knowledgebase"))
                task = add("task", id=new_id(), doc_id=doc_id, from_page=0, to_page=100000000, task_type="",
                           priority=0, begin_at=when, process_duration=round(rng.uniform(1, 60), 3), progress=1.0,
                           progress_msg="Task has been received.\nDone.", retry_count=0,
                           digest=f"{rng.getrandbits(64):016x}", chunk_ids=" ".join(chunk_ids))
                if len(plan.messages) < 3:
                    plan.messages.append({c: task[c] for c in ("id", "doc_id", "from_page", "to_page", "priority")})
                kb.update(doc_num=kb["doc_num"] + 1, chunk_num=kb["chunk_num"] + size.chunks_per_doc,
                          token_num=kb["token_num"] + tokens)
        dialog_id = new_id()
        add("dialog", id=dialog_id, tenant_id=tid, name="助手 Assistant", description="A helpful assistant", icon="",
            language="English", llm_id=_MODELS["llm_id"], llm_setting=json.dumps({"temperature": 0.1, "top_p": 0.3}),
            prompt_type="simple", prompt_config=json.dumps({
                "system": "Answer from the knowledge base:\n{knowledge}", "empty_response": "知识库中未找到您要的答案！",
                "parameters": [{"key": "knowledge", "optional": False}]}, ensure_ascii=False),
            similarity_threshold=0.2, vector_similarity_weight=0.3, top_n=6, top_k=1024, do_refer="1",
            rerank_id="", kb_ids=json.dumps(tenant_kbs), status="1", meta_data_filter=json.dumps({}))
        add("api_token", tenant_id=tid, token=f"ragflow-{new_id()}", dialog_id=dialog_id, source=None, beta=new_id())
        plan.cache += [(f"ragflow:cache:{tid}:llm", {"model": _MODELS["llm_id"], "answer": text(12)}, 3600),
                       (f"ragflow:cache:{tid}:embedding", {"model": _MODELS["embd_id"], "dims": "8"}, 600)]
    return plan


_plan = make_plan  # the name bench/mysql_dump.py imports


# ---------------------------------------------------------------- writers, one per service


def seed_mysql(conn_factory: Callable[[str], Any], database: str, plan: Plan) -> dict[str, int]:
    """Create `database` and the tables if missing, then batch-insert the plan's rows in one transaction.
    `conn_factory(name)` opens a connection to database `name` ("" for none)."""
    if not _SAFE_DB.fullmatch(database):
        raise ValueError(f"unsafe database name {database!r}")
    with contextlib.closing(conn_factory("")) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    counts: dict[str, int] = {}
    with contextlib.closing(conn_factory(database)) as conn, conn.cursor() as cur:
        for table in TABLES:
            parts = [f"`{name}` {kind}" for name, kind in table_columns(table)]
            parts += [f"PRIMARY KEY ({PRIMARY_KEYS.get(table, 'id')})"]
            parts += [f"KEY `{table}_{c}` (`{c}`)" for c in INDEXED.get(table, [])]
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{table}` ({', '.join(parts)}) "
                        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci")
        conn.begin()  # one transaction: fast for "bench", and all or nothing
        for table, rows in plan.rows.items():
            names = [name for name, _ in table_columns(table)]
            verb = "INSERT IGNORE" if table in SHARED else "INSERT"
            cur.executemany(  # PyMySQL turns this into multi-row INSERTs
                f"{verb} INTO `{table}` (`{'`, `'.join(names)}`) VALUES ({', '.join(['%s'] * len(names))})",
                [tuple(row.get(name) for name in names) for row in rows])
            counts[table] = cur.rowcount if table in SHARED else len(rows)
        conn.commit()
    return counts


def seed_minio(client: Any, plan: Plan) -> dict[str, dict[str, str]]:
    for bucket in plan.objects:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)

    def put(item: tuple[str, str, _Object]) -> tuple[str, str, str]:
        bucket, name, obj = item
        # Made in the worker, so "bench" (about 1 GiB) never sits in memory at once.
        data = obj.magic + random.Random(f"{plan.seed}:{obj.key}").randbytes(obj.size - len(obj.magic))
        extra = {"content_type": obj.content_type} if obj.content_type else {}
        client.put_object(bucket, name, io.BytesIO(data), len(data), **extra)
        return bucket, name, sha256(data).hexdigest()

    digests: dict[str, dict[str, str]] = {bucket: {} for bucket in plan.objects}
    with ThreadPoolExecutor(8) as pool:
        items = [(bucket, name, obj) for bucket, objs in plan.objects.items() for name, obj in objs.items()]
        for bucket, name, digest in pool.map(put, items):
            digests[bucket][name] = digest
    return digests


def seed_search(client: Any, plan: Plan) -> dict[str, int]:
    # elasticsearch-py 8 and opensearch-py take different keywords for the same calls.
    opensearch = type(client).__module__.split(".")[0] == "opensearchpy"
    counts: dict[str, int] = {}
    for index, chunks in plan.chunks.items():
        ragflow_indices.create_chunk_index(client, index)  # RAGFlow's own settings and mappings
        for start in range(0, len(chunks), 1000):
            ops: list[dict[str, Any]] = []
            for chunk in chunks[start:start + 1000]:
                ops += [{"index": {"_index": index, "_id": chunk["id"]}}, {k: v for k, v in chunk.items() if k != "id"}]
            resp = client.bulk(body=ops) if opensearch else client.bulk(operations=ops)
            if resp["errors"]:
                failed = next(item["index"] for item in resp["items"] if "error" in item["index"])
                raise RuntimeError(f"bulk indexing into {index} failed: {failed['error']}")
        client.indices.refresh(index=index)  # counts are right the moment seed() returns
        counts[index] = len(chunks)
    return counts


def seed_redis(client: Any, plan: Plan) -> tuple[list[str], list[str]]:
    """Set RAGFlow's secret key (unless set), queue task messages and cache keys; return what this call created."""
    import redis

    created = [SECRET_KEY] if client.set(SECRET_KEY, plan.secret, nx=True) else []
    created += [] if client.exists(QUEUE) else [QUEUE]
    entries = [client.xadd(QUEUE, {"message": json.dumps(m)}).decode() for m in plan.messages]
    try:
        client.xgroup_create(QUEUE, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    for key, fields, ttl in plan.cache:
        client.hset(key, mapping=fields)
        client.expire(key, ttl)
        created.append(key)
    return created, entries


# ---------------------------------------------------------------- RAGFlow's docker/ folder

_ENV = """\
# The vector store RAGFlow uses; it also picks the docker compose profile.
DOC_ENGINE=elasticsearch
COMPOSE_PROFILES=${{DOC_ENGINE}}
STACK_VERSION=8.11.3
# Elasticsearch: host port and the password of user `elastic`.
ES_HOST=es01
ES_PORT={ES_PORT}
ELASTIC_PASSWORD={ELASTIC_PASSWORD}
OS_PORT={OS_PORT}
# MySQL: root's password and the host port.
MYSQL_PASSWORD={MYSQL_PASSWORD}
MYSQL_HOST=mysql
MYSQL_DBNAME=rag_flow
MYSQL_PORT={MYSQL_PORT}
# MinIO: object storage for uploaded files.
MINIO_HOST=minio
MINIO_CONSOLE_PORT=9001
MINIO_PORT={MINIO_PORT}
MINIO_USER={MINIO_USER}
MINIO_PASSWORD={MINIO_PASSWORD}
# Redis: task queue and cache.
REDIS_HOST=redis
REDIS_PORT={REDIS_PORT}
REDIS_PASSWORD={REDIS_PASSWORD}
SVR_HTTP_PORT=9380
RAGFLOW_IMAGE=infiniflow/ragflow:v0.20.5-slim
TIMEZONE='Asia/Shanghai'
"""
_FILES = {
    "service_conf.yaml.template": """\
ragflow: {host: '${RAGFLOW_HOST:-0.0.0.0}', http_port: 9380}
mysql:
  name: '${MYSQL_DBNAME:-rag_flow}'
  user: '${MYSQL_USER:-root}'
  password: '${MYSQL_PASSWORD:-infini_rag_flow}'
  host: '${MYSQL_HOST:-mysql}'
  port: 3306
minio: {user: '${MINIO_USER:-rag_flow}', password: '${MINIO_PASSWORD:-infini_rag_flow}',
        host: '${MINIO_HOST:-minio}:9000'}
es: {hosts: 'http://${ES_HOST:-es01}:9200', username: 'elastic', password: '${ELASTIC_PASSWORD:-infini_rag_flow}'}
redis: {db: 1, password: '${REDIS_PASSWORD:-infini_rag_flow}', host: '${REDIS_HOST:-redis}:6379'}
""",
    "docker-compose.yml": """\
include: [./docker-compose-base.yml]
services:
  ragflow:
    depends_on: {mysql: {condition: service_healthy}}
    image: ${RAGFLOW_IMAGE}
    ports: ["${SVR_HTTP_PORT}:9380", "80:80"]
    volumes: [./ragflow-logs:/ragflow/logs, ./nginx/ragflow.conf:/etc/nginx/conf.d/ragflow.conf,
              ./service_conf.yaml.template:/ragflow/conf/service_conf.yaml.template,
              ./entrypoint.sh:/ragflow/entrypoint.sh]
    env_file: .env
    networks: [ragflow]
""",
    "docker-compose-base.yml": """\
services:
  es01:
    profiles: [elasticsearch]
    image: elasticsearch:${STACK_VERSION}
    environment: ["ELASTIC_PASSWORD=${ELASTIC_PASSWORD}", discovery.type=single-node]
    ports: ["${ES_PORT}:9200"]
    volumes: [esdata01:/usr/share/elasticsearch/data]
    networks: [ragflow]
  mysql:
    image: mysql:8.0.39
    environment: ["MYSQL_ROOT_PASSWORD=${MYSQL_PASSWORD}"]
    command: --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci --init-file /data/application/init.sql
    ports: ["${MYSQL_PORT}:3306"]
    volumes: [mysql_data:/var/lib/mysql, ./init.sql:/data/application/init.sql]
    healthcheck: {test: [CMD, mysqladmin, ping, -uroot, "-p${MYSQL_PASSWORD}"]}
    networks: [ragflow]
  minio:
    image: quay.io/minio/minio:RELEASE.2025-06-13T11-33-47Z
    command: server --console-address ":9001" /data
    environment: ["MINIO_ROOT_USER=${MINIO_USER}", "MINIO_ROOT_PASSWORD=${MINIO_PASSWORD}"]
    ports: ["${MINIO_PORT}:9000", "${MINIO_CONSOLE_PORT}:9001"]
    volumes: [minio_data:/data]
    networks: [ragflow]
  redis:
    image: valkey/valkey:8
    command: redis-server --requirepass ${REDIS_PASSWORD} --maxmemory 128mb --maxmemory-policy allkeys-lru
    ports: ["${REDIS_PORT}:6379"]
    volumes: [redis_data:/data]
    networks: [ragflow]
volumes: {esdata01: {}, mysql_data: {}, minio_data: {}, redis_data: {}}
networks: {ragflow: {driver: bridge}}
""",
    "nginx/ragflow.conf": """\
server {
    listen 80;
    root /ragflow/web/dist;
    location ~ ^/(v1|api) { proxy_pass http://ragflow:9380; }
    location / { try_files $uri $uri/ /index.html; }
}
""",
    "entrypoint.sh": """\
#!/usr/bin/env bash
set -e
# Render service_conf.yaml from its template with this container's environment, then start the server.
eval "echo \\"$(cat /ragflow/conf/service_conf.yaml.template)\\"" > /ragflow/conf/service_conf.yaml
exec python3 api/ragflow_server.py
""",
    "init.sql": "CREATE DATABASE IF NOT EXISTS rag_flow;\nUSE rag_flow;\n",
}


def _port(url: str | None, default: str) -> str:
    return str(urlsplit(url if "//" in url else f"//{url}").port or default) if url else default


def _quote(value: str) -> str:
    """Plain when safe, else single quotes (literal to python-dotenv and compose), else escaped double quotes."""
    if re.fullmatch(r"[\w@%+=:,./-]*", value):
        return value
    return f"'{value}'" if "'" not in value else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


LAYOUTS = ("v0.27", "v0.20")  # RAGFlow's docker/ folder as it ships today, and as it did up to v0.23
_V027 = Path(__file__).parent / "ragflow_docker" / "v0.27"


def write_ragflow_dir(path: Path, env: dict[str, str] | None = None, layout: str = "v0.27",
                      engine: str = "elasticsearch") -> None:
    """Write RAGFlow's docker/ files into `path` (what our config calls `ragflow_dir`: the folder holding .env),
    with the test bed's credentials and ports from `env`; without one, RAGFlow's stock defaults."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    e = env or {}
    if layout == "v0.27":
        _write_v027(path, e, engine)
        return
    values = {
        "ES_PORT": _port(e.get("ES_URL"), "1200"), "ELASTIC_PASSWORD": e.get("ES_PASSWORD", "infini_rag_flow"),
        "OS_PORT": _port(e.get("OPENSEARCH_URL"), "1201"), "MYSQL_PASSWORD": e.get("MYSQL_PASSWORD", "infini_rag_flow"),
        "MYSQL_PORT": e.get("MYSQL_PORT", "5455"), "MINIO_PORT": _port(e.get("MINIO_ENDPOINT"), "9000"),
        "MINIO_USER": e.get("MINIO_ACCESS_KEY", "rag_flow"),
        "MINIO_PASSWORD": e.get("MINIO_SECRET_KEY", "infini_rag_flow"),
        "REDIS_PORT": e.get("REDIS_PORT", "6379"), "REDIS_PASSWORD": e.get("REDIS_PASSWORD", "infini_rag_flow"),
    }
    (path / "nginx").mkdir(parents=True, exist_ok=True)
    (path / ".env").write_text(_ENV.format(**{k: _quote(v) for k, v in values.items()}))
    for name, body in _FILES.items():
        (path / name).write_text(body)
    (path / "entrypoint.sh").chmod(0o755)


def _write_v027(path: Path, e: dict[str, str], engine: str) -> None:
    """v0.27's files as shipped; its .env with the test bed's ports (MySQL's published one in EXPOSE_MYSQL_PORT)."""
    values = {
        "DOC_ENGINE": engine, "ES_PORT": _port(e.get("ES_URL"), "1200"),
        "ELASTIC_PASSWORD": e.get("ES_PASSWORD", "infini_rag_flow"), "OS_PORT": _port(e.get("OPENSEARCH_URL"), "1201"),
        "OPENSEARCH_PASSWORD": e.get("OPENSEARCH_PASSWORD", "infini_rag_flow_OS_01"),
        "MYSQL_PASSWORD": e.get("MYSQL_PASSWORD", "infini_rag_flow"), "EXPOSE_MYSQL_PORT": e.get("MYSQL_PORT", "3306"),
        "MINIO_PORT": _port(e.get("MINIO_ENDPOINT"), "9000"), "MINIO_USER": e.get("MINIO_ACCESS_KEY", "rag_flow"),
        "MINIO_PASSWORD": e.get("MINIO_SECRET_KEY", "infini_rag_flow"), "REDIS_PORT": e.get("REDIS_PORT", "6379"),
        "REDIS_PASSWORD": e.get("REDIS_PASSWORD", "infini_rag_flow"),
    }
    text = (_V027 / ".env").read_text()
    for name, value in values.items():
        # `NAME=value`, or `NAME=${NAME:-value}` (DOC_ENGINE): the value (the default) replaced, the form kept.
        text, found = re.subn(rf"^({name}=(?:\$\{{{name}:-)?)[^}}\n]*", lambda m, value=value: m.group(1) + _quote(value),
                              text, count=1, flags=re.MULTILINE)
        assert found == 1, f"{name} is not in {_V027 / '.env'}"
    (path / "nginx").mkdir(parents=True, exist_ok=True)
    (path / ".env").write_text(text)
    for source in sorted(_V027.rglob("*")):
        if source.is_file() and source.name != ".env":
            target = path / source.relative_to(_V027)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)


# ---------------------------------------------------------------- seed / remove


def seed(*, mysql: MySQLSettings | None = None, database: str = "rag_flow", minio: MinioSettings | None = None,
         search: SearchSettings | None = None, redis: RedisSettings | None = None, ragflow_dir: Path | None = None,
         env: dict[str, str] | None = None, size: str | SeedSize = "tiny", seed: int = 0,
         layout: str = "v0.27") -> Dataset:
    """Seed each service given (None skips it). On failure, what this call wrote is removed before re-raising."""
    plan = make_plan(SIZES[size] if isinstance(size, str) else size, seed)
    ds = Dataset(database, plan.ids("tenant"), plan.ids("knowledgebase"), plan.ids("document"),
                 list(plan.objects) if minio else [], {}, list(plan.chunks) if search else [], {}, {},
                 redis.db if redis else None, Path(ragflow_dir) if ragflow_dir else None)
    existed = False
    try:
        if mysql is not None:
            with contextlib.closing(mysql_connection(mysql, database="")) as conn, conn.cursor() as cur:
                existed = bool(cur.execute("SHOW DATABASES LIKE %s", (database.replace("_", "\\_"),)))
            ds.row_counts = seed_mysql(lambda name: mysql_connection(mysql, database=name), database, plan)
        if minio is not None:
            ds.objects = seed_minio(minio_client(minio), plan)
        if search is not None:
            ds.doc_counts = seed_search(search_client(search), plan)
        if redis is not None:
            ds.redis_keys, ds.stream_entries = seed_redis(redis_client(redis), plan)
        if ragflow_dir is not None:
            write_ragflow_dir(Path(ragflow_dir), env, layout, search.engine if search is not None else "elasticsearch")
    except BaseException:
        with contextlib.suppress(Exception):  # the seeding error is the one to report
            remove(ds, mysql=mysql, minio=minio, search=search, redis=redis, drop_database=not existed)
        raise
    return ds


def remove(ds: Dataset, *, mysql: MySQLSettings | None = None, minio: MinioSettings | None = None,
           search: SearchSettings | None = None, redis: RedisSettings | None = None,
           drop_database: bool = True) -> None:
    """Undo a seed: drop its database (all of it), empty and delete its buckets, delete its indices, its Redis keys
    and stream entries (the shared queue only if this seed created it and no entries remain). Idempotent."""
    from minio.deleteobjects import DeleteObject

    errors: list[Exception] = []
    if mysql is not None and drop_database and _SAFE_DB.fullmatch(ds.database):
        with _collect(errors), contextlib.closing(mysql_connection(mysql, database="")) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{ds.database}`")
    if minio is not None:
        client = minio_client(minio)
        for bucket in ds.buckets:
            with _collect(errors):
                if client.bucket_exists(bucket):
                    names = (DeleteObject(o.object_name) for o in client.list_objects(bucket, recursive=True))
                    for failure in client.remove_objects(bucket, names):
                        raise RuntimeError(f"cannot delete {bucket}/{failure.name}: {failure.message}")
                    client.remove_bucket(bucket)
    if search is not None:
        client = search_client(search)
        for index in ds.indices:
            with _collect(errors):
                client.indices.delete(index=index, ignore_unavailable=True)
    if redis is not None:
        with _collect(errors):
            client = redis_client(redis)
            if ds.stream_entries:
                client.xdel(QUEUE, *ds.stream_entries)
            for key in ds.redis_keys:
                if key != QUEUE or client.xlen(QUEUE) == 0:
                    client.delete(key)
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _collect(errors: list[Exception]) -> Iterator[None]:
    """Keep removing the other parts when one fails; remove() raises the first failure at the end."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    from testbed import env as testbed_env
    from testbed import settings

    parser = argparse.ArgumentParser(prog="python -m testbed.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--database", default="rag_flow")
    parser.add_argument("--ragflow-dir", type=Path, help="write RAGFlow's docker/ files (with .env) into this folder")
    parser.add_argument("--engine", choices=["elasticsearch", "opensearch"], default="elasticsearch")
    parser.add_argument("--layout", choices=LAYOUTS, default="v0.27",
                        help="RAGFlow's docker/ folder as v0.27 ships it (default), or the older v0.20 .env layout")
    parser.add_argument("--redis-db", type=int, default=1, help="RAGFlow's Redis DB (default 1); -1 skips Redis")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    env = testbed_env.load()
    ds = seed(mysql=settings.mysql(env, database=args.database), database=args.database, minio=settings.minio(env),
              search=settings.search(args.engine, env), ragflow_dir=args.ragflow_dir, env=env, size=args.size, layout=args.layout,
              redis=settings.redis(env, db=args.redis_db) if args.redis_db >= 0 else None, seed=args.seed)
    redis_part = (f"Redis DB {ds.redis_db} with the secret key, {len(ds.stream_entries)} queued tasks in {QUEUE} and "
                  f"{len(ds.redis_keys)} keys of its own" if ds.redis_db is not None else "Redis skipped")
    print(f"Seeded a {args.size} RAGFlow into the test bed: database {ds.database} with "
          f"{sum(ds.row_counts.values())} rows ({', '.join(f'{t} {n}' for t, n in ds.row_counts.items())}); "
          f"{len(ds.buckets)} MinIO buckets holding {sum(map(len, ds.objects.values()))} objects; "
          f"{len(ds.indices)} {args.engine} indices holding {sum(ds.doc_counts.values())} chunks; {redis_part}"
          + (f"; RAGFlow's docker/ files in {ds.ragflow_dir}." if ds.ragflow_dir else "."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
