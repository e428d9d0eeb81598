"""`restore --at T` end to end on the test bed: a seeded RAGFlow (MySQL, a private MinIO, Elasticsearch), a
backup, then a change every second around T (rows and documents written with the session's TIMESTAMP set to
that second, so the binlog events carry it; objects uploaded before and after T in real time), the server's
binlog archived byte-exact from the point's coordinates with the archive's own index writer, and the restore."""
from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from actors.actions.restore import Plan, changed_since_snapshot
from actors.actions.restore_at import SearchFrom
from actors.actions.runs import run_component
from actors.binlog.index import ArchivedFile, ArchiveIndex, RecordedGap, ServerIdentity, save_index
from actors.minio.mirror import reconcile
from actors.search.backup import SnapshotRepo
from actors.search.interval import take as take_interval_snapshot
from agent.cli import app
from core import clients
from core.atomic import sha256_of
from core.config import load_settings
from core.pitr import BinlogCoordinates
from core.points import Storage
from testbed import settings as tb
from testbed.seed import remove, seed
from tests.actors.mysql.binlog_copy import copy_binlog, remove_binlog_copies

SECONDS = (-2, -1, 0, 1, 2)


def cli(config: Path, *args: str):
    return CliRunner().invoke(app, ["--config", str(config), *args], terminal_width=200)


def wait_for_second(moment: datetime) -> None:
    """Sleep until the clock has passed `moment` (real time must be past what is written)."""
    while datetime.now(timezone.utc) < moment:
        time.sleep(0.1)


def at_second(cur, moment: datetime, sql: str, args: tuple = ()) -> None:
    cur.execute("SET TIMESTAMP = %s", (int(moment.timestamp()),))
    cur.execute(sql, args)
    cur.execute("SET TIMESTAMP = DEFAULT")


class Scene:
    """What the fixture made: config, dataset, T, and the uploads before and after it."""

    def __init__(self, config: Path, dataset, services, moment: datetime, bucket: str):
        self.config, self.dataset, self.services, self.t, self.bucket = config, dataset, services, moment, bucket
        self.settings = load_settings(config)

    def probe(self) -> list[tuple]:
        with clients.mysql_connection(self.settings.mysql) as conn, conn.cursor() as cur:
            cur.execute("SELECT second, kb_id FROM pitr_probe ORDER BY second")
            return [tuple(row) for row in cur.fetchall()]

    def document_names(self) -> dict[str, str]:
        with clients.mysql_connection(self.settings.mysql) as conn, conn.cursor() as cur:
            cur.execute("SELECT id, name FROM document WHERE id IN (%s, %s, %s, %s, %s)", tuple(self.dataset.doc_ids[:5]))
            return dict(cur.fetchall())

    def objects(self) -> set[str]:
        client = clients.minio_client(self.services["minio"])
        return {item.object_name for item in client.list_objects(self.bucket, prefix="pitr/", recursive=True)}


@pytest.fixture(autouse=True)
def no_binlog_copies_left(tmp_path):
    yield
    remove_binlog_copies(tmp_path)


@pytest.fixture
def scene(tmp_path, testbed_env, private_minio) -> Iterator[Scene]:
    database = f"t_{uuid.uuid4().hex[:10]}"
    services = {"mysql": tb.mysql(testbed_env, database=database), "minio": private_minio.settings(),
                "search": tb.search("elasticsearch", testbed_env)}
    dataset = seed(database=database, ragflow_dir=tmp_path / "ragflow" / "docker", env=testbed_env, size="tiny",
                   **services)
    repository = f"repo_{uuid.uuid4().hex[:10]}"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(dataset.ragflow_dir),
        "mysql": {"host": testbed_env["MYSQL_HOST"], "port": int(testbed_env["MYSQL_PORT"]), "database": database,
                  "password": testbed_env["MYSQL_PASSWORD"]},
        "minio": {"endpoint": private_minio.endpoint, "access_key": private_minio.access_key,
                  "secret_key": private_minio.secret_key},
        "search": {"url": testbed_env["ES_URL"], "password": testbed_env["ES_PASSWORD"], "repository": repository,
                   "repository_path": f"{testbed_env['SNAPSHOT_ROOT']}/{repository}", "indices": dataset.indices},
    }))
    settings = load_settings(config)
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE pitr_probe (second INT PRIMARY KEY, kb_id VARCHAR(32))")
    assert reconcile(settings).complete
    assert cli(config, "backup", "--local").exit_code == 0
    point = Storage(settings.storage_root).points()[0]
    record = point.manifest().components["mysql"]
    # T is a whole second after the point and after the first upload; the second upload is after T + 1.
    client = clients.minio_client(services["minio"])
    bucket = dataset.buckets[0]
    done = max(item.finished_at for item in point.manifest().components.values())  # the search snapshot too
    wait_for_second(done + timedelta(seconds=3))
    client.put_object(bucket, "pitr/before", io.BytesIO(b"before T"), 8)
    moment = (datetime.now(timezone.utc) + timedelta(seconds=2)).replace(microsecond=0)
    wait_for_second(moment + timedelta(seconds=1, milliseconds=100))
    client.put_object(bucket, "pitr/after", io.BytesIO(b"after T"), 7)
    kb = dataset.kb_ids[0]
    with clients.mysql_connection(settings.mysql) as conn, conn.cursor() as cur:
        for second, doc in zip(SECONDS, dataset.doc_ids):
            when = moment + timedelta(seconds=second)
            at_second(cur, when, "INSERT INTO pitr_probe VALUES (%s, %s)", (second, kb))
            at_second(cur, when, "UPDATE document SET name = %s, update_time = %s WHERE id = %s",
                      (f"renamed at {second:+d}", int(when.timestamp() * 1000), doc))
            if second == -1:  # deleted after the search snapshot, before T: chunks in the snapshot, no row
                at_second(cur, when, "DELETE FROM document WHERE id = %s", (dataset.doc_ids[5],))
        conn.commit()
    wait_for_second(moment + timedelta(seconds=3))
    assert reconcile(settings).complete
    start = BinlogCoordinates(record.details["binlog"]["file"], record.details["binlog"]["position"])
    archive(settings, start, record.started_at - timedelta(seconds=1), moment + timedelta(seconds=2))
    yield Scene(config, dataset, services, moment, bucket)
    es = clients.search_client(services["search"])
    repo = SnapshotRepo(es, "elasticsearch", repository)
    for snap in repo.snapshots():
        repo.delete(snap["snapshot"])
    repo.unregister()
    remove(dataset, **services)


def archive(settings, start: BinlogCoordinates, first: datetime, last: datetime) -> None:
    """The server's files from `start` into the archive folder, indexed as the archive component does."""
    files = copy_binlog(settings.mysql, start, settings.layout.binlog_archive)
    server = ServerIdentity(server_id=1, gtid_domain=0, sequence_start=files[0].name)
    entries = [ArchivedFile(name=path.name, size=path.stat().st_size, sha256=sha256_of(path), first_event=first,
                            last_event=last if path == files[-1] else None, complete=path != files[-1],
                            server=server)
               for path in files]
    save_index(settings.layout, ArchiveIndex(files=entries))


def expected_names(scene: Scene, through: int) -> dict[str, str]:
    return {doc: f"renamed at {second:+d}" for second, doc in zip(SECONDS, scene.dataset.doc_ids) if second <= through}


def test_restore_at_t_brings_back_exactly_the_rows_committed_at_or_before_t_and_the_objects_as_at_t(scene):
    with clients.mysql_connection(scene.settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM pitr_probe")
        cur.execute("UPDATE document SET name = 'damaged'")
        conn.commit()
    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--component", "mysql", "--component", "minio",
                 "--yes")
    assert result.exit_code == 0, result.output
    kb = scene.dataset.kb_ids[0]
    assert scene.probe() == [(-2, kb), (-1, kb), (0, kb)]
    names = scene.document_names()
    assert {doc: name for doc, name in names.items() if name.startswith("renamed")} == expected_names(scene, 0)
    assert "damaged" not in names.values()
    assert scene.objects() == {"pitr/before"}
    when = scene.t.astimezone().isoformat(timespec="seconds")
    assert f"(the point's dump + the archived binlog to {when})" in " ".join(result.output.split())


def test_dry_run_says_the_moment_each_component_comes_back_to_and_why(scene):
    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--dry-run")
    assert result.exit_code == 0, result.output
    when = scene.t.astimezone().isoformat(timespec="seconds")
    output = " ".join(result.output.split())  # the console folds long lines
    assert f"mysql: {when} (point daily/" in output and f"+ binlog to {when})" in output
    assert f"minio: {when} (mirror at {when})" in output
    assert "search: " in output and "(snapshot of point daily/" in output
    assert "config: " in output and "(commit " in output
    assert "then the chunks of documents the restored MySQL does not have are removed from the restored indices" \
        in output
    as_json = json.loads(cli(scene.config, "restore", "--at", scene.t.isoformat(), "--dry-run", "--json").output)
    moments = {item["component"]: item["moment"] for item in as_json["components"]}
    assert moments["mysql"].endswith(f"+ binlog to {when})") and moments["minio"] == f"{when} (mirror at {when})"
    assert scene.probe() == [(second, scene.dataset.kb_ids[0]) for second in SECONDS]  # nothing changed


def test_restore_at_t_lists_and_marks_the_documents_changed_after_the_search_snapshot(scene):
    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--component", "mysql", "--component",
                 "search", "--reparse-changed", "--yes")
    assert result.exit_code == 0, result.output
    assert "3 document(s) changed between the search snapshot and" in result.output
    for doc in scene.dataset.doc_ids[:3]:
        assert doc in result.output
    with clients.mysql_connection(scene.settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, run, progress FROM document WHERE progress_msg LIKE 'ragflow-backup restore --at%%'")
        assert sorted(cur.fetchall()) == sorted((doc, "0", 0.0) for doc in scene.dataset.doc_ids[:3])


def chunks_of(scene: Scene, doc: str) -> int:
    es = clients.search_client(scene.services["search"])
    es.indices.refresh(index=scene.dataset.indices)
    return int(es.count(index=scene.dataset.indices, query={"term": {"doc_id": doc}})["count"])


def test_restore_at_t_removes_the_chunks_of_a_document_deleted_between_the_search_snapshot_and_t(scene):
    deleted, kept, kb = scene.dataset.doc_ids[5], scene.dataset.doc_ids[3], scene.dataset.kb_ids[1]
    chunks = chunks_of(scene, deleted)

    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--component", "mysql", "--component",
                 "search", "--yes")

    assert result.exit_code == 0, result.output
    assert chunks > 0 and chunks_of(scene, deleted) == 0, result.output
    assert chunks_of(scene, kept) == chunks  # the knowledge base's other documents keep theirs
    output = " ".join(result.output.split())
    assert f"removed {chunks} chunk(s) of documents the restored MySQL does not have" in output
    assert f"kb {kb}: {chunks} chunk(s) of 1 document(s)" in output
    audit = (scene.settings.storage_root / "logs" / "audit.log").read_text().splitlines()
    assert json.loads(audit[-1])["removed_chunks"] == {kb: chunks}


def test_a_whole_restore_of_a_point_whose_dump_lacks_a_document_its_snapshot_has_removes_its_chunks(scene):
    # The components of a point are taken one after the other: a document deleted between the search snapshot
    # and the dump is in the one and not the other.
    deleted, kb = scene.dataset.doc_ids[4], scene.dataset.kb_ids[1]
    chunks, also = chunks_of(scene, deleted), chunks_of(scene, scene.dataset.doc_ids[5])  # deleted by the scene
    point = Storage(scene.settings.storage_root).new_point(["search", "mysql"])
    assert run_component(scene.settings, point, "search").status == "ok"
    with clients.mysql_connection(scene.settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM document WHERE id = %s", (deleted,))
        conn.commit()
    assert run_component(scene.settings, point, "mysql").status == "ok"

    result = cli(scene.config, "restore", "--point", point.ref, "--component", "mysql", "--component", "search",
                 "--yes")

    assert result.exit_code == 0, result.output
    assert chunks > 0 and chunks_of(scene, deleted) == 0 and chunks_of(scene, scene.dataset.doc_ids[5]) == 0
    assert f"kb {kb}: {chunks + also} chunk(s) of 2 document(s)" in " ".join(result.output.split())


@pytest.mark.fault("the restored MySQL's documents cannot be read after a restore of MySQL and search",
                   "no chunk is removed; the report says so and why, and the restore stands")
def test_when_the_restored_mysql_cannot_be_read_no_chunk_is_removed_and_the_report_says_so(scene):
    chunks = chunks_of(scene, scene.dataset.doc_ids[5])
    point = Storage(scene.settings.storage_root).new_point(["search", "mysql"])
    assert run_component(scene.settings, point, "search").status == "ok"
    with clients.mysql_connection(scene.settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("RENAME TABLE document TO document_elsewhere")  # the point's dump has no document table
    assert run_component(scene.settings, point, "mysql").status == "ok"

    result = cli(scene.config, "restore", "--point", point.ref, "--component", "mysql", "--component", "search",
                 "--yes")

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "nothing was removed of the chunks whose documents the restored MySQL does not have" in output
    assert "document' doesn't exist" in output
    assert chunks > 0 and chunks_of(scene, scene.dataset.doc_ids[5]) == chunks


def test_a_restore_of_search_alone_at_t_leaves_every_chunk_in_place(scene):
    chunks = chunks_of(scene, scene.dataset.doc_ids[5])

    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--component", "search", "--yes")

    assert result.exit_code == 0, result.output
    assert chunks_of(scene, scene.dataset.doc_ids[5]) == chunks
    assert "chunk(s) of documents the restored MySQL does not have" not in result.output


def test_restore_of_one_knowledge_base_at_t_brings_back_its_rows_as_at_t(scene):
    kb = scene.dataset.kb_ids[0]
    with clients.mysql_connection(scene.settings.mysql) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM document WHERE kb_id = %s", (kb,))
        kb_docs = {row[0] for row in cur.fetchall()}
        cur.execute("UPDATE document SET name = 'damaged' WHERE kb_id = %s", (kb,))
        conn.commit()
    result = cli(scene.config, "restore", "--kb", kb, "--at", scene.t.isoformat(), "--component", "mysql", "--yes")
    assert result.exit_code == 0, result.output
    names = scene.document_names()
    wanted = {doc: name for doc, name in expected_names(scene, 0).items() if doc in kb_docs}
    assert {doc: name for doc, name in names.items() if doc in kb_docs and name.startswith("renamed")} == wanted
    assert "damaged" not in {name for doc, name in names.items() if doc in kb_docs}


def test_a_gap_in_the_archive_refuses_the_restore_naming_the_nearest_moments_and_changes_nothing(scene):
    # The server purged the point's file before it was archived: the archive starts with a later one, at T + 1.
    layout = scene.settings.layout
    index = ArchiveIndex.model_validate_json((layout.binlog_archive / "index.json").read_text())
    base, number = index.files[0].name.rsplit(".", 1)
    later = index.files[-1].model_copy(update={"name": f"{base}.{int(number) + 50:06d}",
                                               "first_event": scene.t + timedelta(seconds=1)})
    (layout.binlog_archive / index.files[-1].name).rename(layout.binlog_archive / later.name)
    save_index(layout, ArchiveIndex(files=[later], gaps=[RecordedGap(
        before=later.name, missing=[index.files[0].name], reason="purged by the server before it was archived",
        detected_at=datetime.now(timezone.utc))]))
    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--yes")
    assert result.exit_code != 0
    output = " ".join(result.output.split())
    assert "cannot bring MySQL back to that second" in output and "Nothing was changed" in output
    after = (scene.t + timedelta(seconds=1)).astimezone().isoformat(timespec="seconds")
    assert f"the nearest moments MySQL can be restored to: after {after}" in output
    assert scene.probe() == [(second, scene.dataset.kb_ids[0]) for second in SECONDS]
    assert scene.objects() == {"pitr/before", "pitr/after"}


def test_without_an_archive_restore_at_says_mysql_comes_back_to_the_points_time_not_t(scene):
    (scene.settings.layout.binlog_archive / "index.json").unlink()  # nothing archived (or the archive is off)
    result = cli(scene.config, "restore", "--at", scene.t.isoformat(), "--component", "mysql", "--yes")
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "no binlog archive, so MySQL comes back to the point's time, not" in output
    assert scene.probe() == []  # the point's: the probe rows were all written after it


def test_restore_at_t_brings_search_back_as_the_interval_snapshot_taken_between_the_point_and_t(scene):
    es = clients.search_client(scene.services["search"])
    index, kb = scene.dataset.indices[0], scene.dataset.kb_ids[0]
    es.index(index=index, id="added-after-the-point", document={"kb_id": kb, "content_with_weight": "a"}, refresh=True)
    taken = take_interval_snapshot(scene.settings, logging.getLogger("test.restore_at"))
    moment = (datetime.now(timezone.utc) + timedelta(seconds=1)).replace(microsecond=0)
    wait_for_second(moment + timedelta(seconds=1))
    es.index(index=index, id="added-after-t", document={"kb_id": kb, "content_with_weight": "b"}, refresh=True)

    dry = cli(scene.config, "restore", "--at", moment.isoformat(), "--component", "search", "--dry-run")
    result = cli(scene.config, "restore", "--at", moment.isoformat(), "--component", "search", "--yes")

    assert taken is not None and dry.exit_code == 0, dry.output
    when = taken.taken_at.astimezone().isoformat(timespec="seconds")
    assert f"search: {when} (interval snapshot at {when}" in " ".join(dry.output.split())
    assert result.exit_code == 0, result.output
    assert es.exists(index=index, id="added-after-the-point")
    assert not es.exists(index=index, id="added-after-t")
    timeline = json.loads(cli(scene.config, "timeline", "--json").output)
    assert [item["snapshot"] for item in timeline["components"]["search"]["intervals"]] == [taken.name]


def test_the_changed_documents_window_starts_at_the_interval_snapshot_restored_not_at_the_point(scene):
    point = Storage(scene.settings.storage_root).points()[0]
    record = point.manifest().components["search"]
    after_the_point = SearchFrom(point, record, scene.t - timedelta(seconds=1))  # as if taken at T - 1
    plan = Plan(point, scene.t, ["mysql", "search"], moments={"search": "-"}, search_from=after_the_point)

    changed = changed_since_snapshot(scene.settings, plan, {"mysql": None, "search": None})

    assert [doc.id for doc in changed] == [scene.dataset.doc_ids[2]]  # renamed at T; those at T-2, T-1 are in it


def test_restore_of_one_knowledge_base_at_t_takes_its_chunks_from_the_interval_snapshot_before_t(scene):
    es = clients.search_client(scene.services["search"])
    index, kb = scene.dataset.indices[0], scene.dataset.kb_ids[0]
    es.index(index=index, id="kb-chunk-after-the-point", document={"kb_id": kb, "content_with_weight": "a"},
             refresh=True)
    assert take_interval_snapshot(scene.settings, logging.getLogger("test.restore_at")) is not None
    moment = (datetime.now(timezone.utc) + timedelta(seconds=1)).replace(microsecond=0)
    wait_for_second(moment + timedelta(seconds=1))
    es.index(index=index, id="kb-chunk-after-t", document={"kb_id": kb, "content_with_weight": "b"}, refresh=True)

    result = cli(scene.config, "restore", "--kb", kb, "--at", moment.isoformat(), "--component", "search", "--yes")

    assert result.exit_code == 0, result.output
    assert es.exists(index=index, id="kb-chunk-after-the-point")
    assert not es.exists(index=index, id="kb-chunk-after-t")
