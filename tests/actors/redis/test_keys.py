"""Redis backup on the real test bed: DUMP/PTTL of every key, RESTORE brings back what RAGFlow needs."""
from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from actors.actions.runs import run_component
from actors.redis import COMPONENT
from actors.redis import keys as redis_keys
from core import clients
from core.component import PermanentError
from core.config import Settings
from core.face import RestoreRequest
from core.points import Storage
from testbed import settings as testbed_settings

QUEUE = "rag_flow_svr_queue"
GROUP = "rag_flow_svr_task_broker"
SECRET = b"0123456789abcdef-not-a-real-secret"


@pytest.fixture
def settings(tmp_path, testbed_env, redis_db) -> Settings:
    return Settings(storage_root=tmp_path / "backups", redis=testbed_settings.redis(testbed_env, db=redis_db))


@pytest.fixture
def client(settings):
    return clients.redis_client(settings.redis)


def seed(client) -> None:
    """A small RAGFlow-shaped DB 1: the JWT secret, a task stream with one task taken but not acked."""
    client.set(redis_keys.SECRET_KEY, SECRET)
    client.xadd(QUEUE, {"message": json.dumps({"id": "task-1", "doc_id": "d1"})})
    client.xadd(QUEUE, {"message": json.dumps({"id": "task-2", "doc_id": "d2"})})
    client.xgroup_create(QUEUE, GROUP, id="0")
    client.xreadgroup(GROUP, "worker-1", {QUEUE: ">"}, count=1)  # read, never acked: pending
    client.hset("ragflow:llm:config", mapping={"model": "qwen", "max_tokens": "512"})
    client.set("cache:answer:42", "cached", px=600_000)


def backed_up_point(settings, tmp_path: Path):
    point = Storage(tmp_path / "backups").new_point([redis_keys.NAME])
    record = run_component(settings, point, redis_keys.NAME)
    assert record is not None and record.status == "ok", record and record.error
    return point, record


def test_a_flushed_db_comes_back_with_secret_key_pending_tasks_and_ttls(settings, client, tmp_path):
    seed(client)
    point, record = backed_up_point(settings, tmp_path)

    assert record.counts == {"keys": 4, "type:hash": 1, "type:stream": 1, "type:string": 2}
    assert record.details["has_secret_key"] is True
    assert record.details["streams"] == [QUEUE]
    assert record.details["db"] == settings.redis.db
    assert point.manifest().status == "complete"
    assert (point.folder / redis_keys.ARTIFACT).stat().st_mode & 0o777 == 0o600

    client.flushdb()
    assert redis_keys.restore_keys(settings, point.folder / redis_keys.ARTIFACT) == 4

    assert client.get(redis_keys.SECRET_KEY) == SECRET
    assert client.ttl(redis_keys.SECRET_KEY) == -1
    assert [fields[b"message"] for _, fields in client.xrange(QUEUE)] == [
        json.dumps({"id": "task-1", "doc_id": "d1"}).encode(), json.dumps({"id": "task-2", "doc_id": "d2"}).encode()]
    groups = client.xinfo_groups(QUEUE)
    assert [(g["name"], g["pending"]) for g in groups] == [(GROUP.encode(), 1)]
    # The task taken before the backup is still pending, and the other one is still to be delivered.
    assert client.xpending(QUEUE, GROUP)["consumers"] == [{"name": b"worker-1", "pending": 1}]
    assert len(client.xreadgroup(GROUP, "worker-2", {QUEUE: ">"})[0][1]) == 1
    assert client.hgetall("ragflow:llm:config") == {b"model": b"qwen", b"max_tokens": b"512"}
    assert 0 < client.pttl("cache:answer:42") <= 600_000


def test_the_dump_is_gzipped_json_lines_with_a_header_and_no_plain_values(settings, client, tmp_path):
    seed(client)
    point, _ = backed_up_point(settings, tmp_path)
    raw = (point.folder / redis_keys.ARTIFACT).read_bytes()
    assert SECRET not in raw
    lines = gzip.decompress(raw).decode().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == redis_keys.FORMAT and header["db"] == settings.redis.db and header["keys"] == 4
    assert header["redis_version"]
    records = [json.loads(line) for line in lines[1:]]
    assert all(set(r) == {"key", "ttl_ms", "type", "dump"} for r in records) and len(records) == 4
    assert SECRET.decode() not in (point.folder / "backup.log").read_text()


def test_restore_refuses_to_overwrite_existing_keys_unless_asked(settings, client, tmp_path):
    seed(client)
    point, _ = backed_up_point(settings, tmp_path)
    path = point.folder / redis_keys.ARTIFACT
    client.set(redis_keys.SECRET_KEY, b"changed since")

    with pytest.raises(PermanentError, match="already exist"):
        redis_keys.restore_keys(settings, path)
    assert client.get(redis_keys.SECRET_KEY) == b"changed since"

    assert redis_keys.restore_keys(settings, path, replace=True) == 4
    assert client.get(redis_keys.SECRET_KEY) == SECRET


def test_restore_can_pick_keys_by_pattern_into_the_db_it_is_told(settings, client, tmp_path):
    seed(client)
    point, _ = backed_up_point(settings, tmp_path)
    client.flushdb()
    # Settings naming another DB: the explicit `db` wins (restore drills restore into scratch DBs).
    elsewhere = settings.model_copy(update={"redis": settings.redis.model_copy(update={"db": 0})})
    restored = redis_keys.restore_keys(elsewhere, point.folder / redis_keys.ARTIFACT, db=settings.redis.db,
                                       patterns=["ragflow:system:*", QUEUE])
    assert restored == 2
    assert sorted(client.keys()) == sorted([redis_keys.SECRET_KEY, QUEUE.encode()])


def test_an_empty_db_backs_up_to_a_header_only_dump(settings, tmp_path):
    point, record = backed_up_point(settings, tmp_path)
    assert record.counts == {"keys": 0}
    assert record.details["has_secret_key"] is False
    assert redis_keys.verify(settings, point, record) == []


def test_a_sound_dump_passes_verify(settings, client, tmp_path):
    seed(client)
    point, record = backed_up_point(settings, tmp_path)
    assert redis_keys.verify(settings, point, record) == []


@pytest.mark.fault('corrupt input: a corrupted Redis dump',
                   'verify reports it')
def test_a_corrupted_dump_is_caught_by_verify(settings, client, tmp_path):
    seed(client)
    point, record = backed_up_point(settings, tmp_path)
    path = point.folder / redis_keys.ARTIFACT
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = redis_keys.verify(settings, point, record)
    assert problems and "SHA-256" in problems[0]


def test_a_dump_rewritten_with_a_key_missing_is_caught_by_verify(settings, client, tmp_path):
    """Even with the manifest's size and hash made to match, the key count gives it away."""
    seed(client)
    point, record = backed_up_point(settings, tmp_path)
    path = point.folder / redis_keys.ARTIFACT
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:-1])))
    from core.atomic import sha256_of

    forged = record.model_copy(update={"artifacts": [a.model_copy(update={"bytes": path.stat().st_size,
                                                                           "sha256": sha256_of(path)})
                                                     for a in record.artifacts]})
    problems = redis_keys.verify(settings, point, forged)
    assert any("3 keys" in p for p in problems)


@pytest.mark.fault('wrong Redis password',
                   'a permanent error naming Redis host:port and the setting to fix; no artifact')
def test_a_wrong_password_fails_the_record_and_leaves_no_artifact(settings, tmp_path):
    settings.redis.password = SecretStr("not-the-password")
    point = Storage(tmp_path / "backups").new_point([redis_keys.NAME])
    record = run_component(settings, point, redis_keys.NAME)
    assert record is not None and record.status == "failed"
    assert "PermanentError" in record.error and "redis.password" in record.error
    assert "not-the-password" not in record.error
    assert [p.name for p in point.folder.iterdir() if "redis" in p.name] == []
    assert point.manifest().status == "failed"


def test_a_refused_connection_is_transient(settings, tmp_path):
    settings.redis.port = 1  # nothing listens there
    point = Storage(tmp_path / "backups").new_point([redis_keys.NAME])
    with pytest.raises(Exception) as caught:
        redis_keys.backup(settings, point, logging.getLogger("test"))
    assert not isinstance(caught.value, PermanentError)
    assert not (point.folder / redis_keys.ARTIFACT).exists()


# ---------------------------------------------------------------- exact restores (upgrade rollback, restore --exact)


def test_an_exact_restore_removes_the_keys_the_safety_point_holds_and_leaves_one_written_after_it(
        settings, client, tmp_path):
    seed(client)
    point, _ = backed_up_point(settings, tmp_path)
    client.set("ragflow:new-version:cache", "made after the point")
    client.hset("ragflow:new-version:session", mapping={"user": "someone"})
    safety, _ = backed_up_point(settings, tmp_path)
    client.set("written-after-the-safety-point", "kept")

    result = COMPONENT.restore(settings, RestoreRequest(point=point, exact=True, held_by=safety, log=logging.getLogger("test")))

    assert (int(result), result.removed, result.left) == (4, 2, 1)
    assert sorted(client.scan_iter()) == sorted([b"cache:answer:42", b"rag_flow_svr_queue", b"ragflow:llm:config",
                                                 b"ragflow:system:secret_key", b"written-after-the-safety-point"])


def test_without_a_safety_point_an_exact_restore_removes_nothing(settings, client, tmp_path):
    seed(client)
    point, _ = backed_up_point(settings, tmp_path)
    client.set("ragflow:new-version:cache", "made after the point")

    result = COMPONENT.restore(settings, RestoreRequest(point=point, exact=True, held_by=None, log=logging.getLogger("test")))

    assert (result.removed, result.left) == (0, 1)
    assert client.get("ragflow:new-version:cache") == b"made after the point"


def test_a_plain_restore_leaves_the_keys_the_point_lacks(settings, client, tmp_path):
    seed(client)
    point, _ = backed_up_point(settings, tmp_path)
    client.set("ragflow:new-version:cache", "made after the point")

    restored = COMPONENT.restore(settings, RestoreRequest(point=point, log=logging.getLogger("test")))

    assert restored == 4 and client.get("ragflow:new-version:cache") == b"made after the point"
