"""The search component against the real Elasticsearch 8 and OpenSearch 2 of the test bed."""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from actors.actions.runs import record_final_failure, run_component, run_component_attempt
from actors.search import backup as search
from core import clients
from core.component import PermanentError
from core.config import SearchSettings, Settings
from core.points import Point, Storage
from tests.conftest import unique

DOCS = {"ragflow_tenant_a": 3, "ragflow_doc_meta_a": 5, "memory_a": 0}


def put_docs(client, engine: str, index: str, n: int) -> None:
    """One shard, no replica (single-node servers), `n` small documents."""
    body = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}}
    if engine == "elasticsearch":
        client.indices.create(index=index, settings=body["settings"])
        for i in range(n):
            client.index(index=index, id=str(i), document={"content_with_weight": f"chunk {i}", "kb_id": "kb1"})
    else:
        client.indices.create(index=index, body=body)
        for i in range(n):
            client.index(index=index, id=str(i), body={"content_with_weight": f"chunk {i}", "kb_id": "kb1"})


@pytest.fixture
def search_cfg(search_settings: SearchSettings, index_prefix: str) -> Iterator[SearchSettings]:
    """Our own indices only; afterwards every snapshot in this test's repository is deleted, then the repository
    unregistered (conftest's own cleanup calls delete_repository(name=), which opensearch-py does not accept)."""
    cfg = search_settings.model_copy(update={"indices": [f"{index_prefix}*"]})
    yield cfg
    repo = search.SnapshotRepo(clients.search_client(cfg), cfg.engine, cfg.repository)
    try:
        names = [info["snapshot"] for info in repo.snapshots()]
    except search.RepositoryMissing:
        return
    for name in names:
        repo.delete(name)
    repo.unregister()


@pytest.fixture
def seeded(search_cfg: SearchSettings, index_prefix: str) -> dict[str, int]:
    client = clients.search_client(search_cfg)
    counts = {f"{index_prefix}{name}": n for name, n in DOCS.items()}
    for index, n in counts.items():
        put_docs(client, search_cfg.engine, index, n)
    return counts


def settings_for(cfg: SearchSettings, tmp_path) -> Settings:
    return Settings(storage_root=tmp_path / "backups", search=cfg)


def new_point(settings: Settings, folder: str = "backups") -> Point:
    return Storage(settings.storage_root.parent / folder).new_point([search.NAME])


def snapshot_names(cfg: SearchSettings) -> set[str]:
    repo = search.SnapshotRepo(clients.search_client(cfg), cfg.engine, cfg.repository)
    return {info["snapshot"] for info in repo.snapshots()}


def test_a_backup_takes_a_good_snapshot_and_records_each_index_doc_count(search_cfg, seeded, index_prefix, tmp_path):
    client = clients.search_client(search_cfg)
    put_docs(client, search_cfg.engine, f"{index_prefix}ragflow_closed", 2)
    client.indices.close(index=f"{index_prefix}ragflow_closed")  # closed indices are left out
    settings = settings_for(search_cfg, tmp_path)
    point = new_point(settings)

    record = run_component(settings, point, search.NAME)

    assert record.status == "ok", record.error
    assert point.manifest().components["search"].status == "ok"
    assert point.manifest().status == "complete"
    assert record.counts == seeded
    name = record.details["snapshot"]
    assert name.startswith("ragflow-backup-") and name == name.lower()
    assert record.details["state"] == "SUCCESS"
    assert record.details["engine"] == search_cfg.engine
    assert record.details["server_version"][0].isdigit()
    assert search.snapshot_exists(search_cfg, name) == "SUCCESS"
    saved = json.loads(point.path("search_snapshot.json").read_text())
    assert saved["snapshot"] == name and saved["state"] == "SUCCESS"
    assert saved["doc_counts"] == seeded and saved["indices"] == sorted(seeded)
    assert saved["repository"] == {"name": search_cfg.repository, "type": "fs", "location": search_cfg.repository_path}
    assert saved["shards"]["failed"] == 0
    assert saved["aliases"] == {}  # none of these has an alias
    assert [a.kind for a in record.artifacts] == ["json"]


def test_a_backup_records_each_index_alias_for_the_restore_to_put_back(search_cfg, seeded, index_prefix, tmp_path):
    client = clients.search_client(search_cfg)
    chunks, alias = f"{index_prefix}ragflow_tenant_a", f"{index_prefix}kb1_chunks"
    action = {"add": {"index": chunks, "alias": alias, "filter": {"term": {"kb_id": "kb1"}}, "routing": "r1"}}
    if search_cfg.engine == "elasticsearch":
        client.indices.update_aliases(actions=[action])
    else:
        client.indices.update_aliases(body={"actions": [action]})
    settings = settings_for(search_cfg, tmp_path)
    point = new_point(settings)

    record = run_component(settings, point, search.NAME)

    assert record.status == "ok", record.error
    saved = json.loads(point.path("search_snapshot.json").read_text())
    assert saved["aliases"] == {chunks: {alias: {"filter": {"term": {"kb_id": "kb1"}}, "index_routing": "r1",
                                                 "search_routing": "r1"}}}


@pytest.mark.fault('corrupt input: a snapshot record edited by hand, or its snapshot deleted',
                   'verify reports the edited record (SHA-256) and the missing snapshot')
def test_verify_catches_a_deleted_snapshot_and_an_edited_record(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg, tmp_path)
    point = new_point(settings)
    record = run_component(settings, point, search.NAME)
    assert search.verify(settings, point, record) == []

    path = point.path("search_snapshot.json")
    text = path.read_text()
    path.write_text(text.replace('"SUCCESS"', '"SUCCESZ"'))  # same length: only the checksum can tell
    problems = search.verify(settings, point, record)
    assert len(problems) == 1 and "SHA-256" in problems[0]
    path.write_text(text)

    name = record.details["snapshot"]
    clients.search_client(search_cfg).snapshot.delete(repository=search_cfg.repository, snapshot=name)
    problems = search.verify(settings, point, record)
    assert len(problems) == 1 and name in problems[0] and "missing" in problems[0]


def test_retention_keeps_the_newest_snapshots_and_every_one_a_point_names(search_cfg, seeded, tmp_path):
    cfg = search_cfg.model_copy(update={"keep_snapshots": 2})
    settings = settings_for(cfg, tmp_path)

    # Points in separate storage roots name nothing in each other: only `keep` decides.
    taken = [run_component(settings, new_point(settings, f"solo{i}"), search.NAME).details["snapshot"] for i in range(3)]
    assert snapshot_names(cfg) == set(taken[1:])

    # A point still on disk protects its snapshot, however old.
    storage = Storage(tmp_path / "shared")
    first = storage.new_point([search.NAME])
    kept = run_component(settings, first, search.NAME).details["snapshot"]
    later = []
    for _ in range(2):
        point = storage.new_point([search.NAME])
        later.append(run_component(settings, point, search.NAME).details["snapshot"])
        shutil.rmtree(point.folder)  # its snapshot is no longer referenced
    last = run_component(settings, storage.new_point([search.NAME]), search.NAME)

    assert search.referenced_snapshots(storage) == {kept, last.details["snapshot"]}
    assert snapshot_names(cfg) == {kept, later[1], last.details["snapshot"]}
    assert later[0] in last.details["deleted_snapshots"]


def test_an_empty_ragflow_is_a_sound_backup_without_a_snapshot(search_cfg, tmp_path):
    settings = settings_for(search_cfg, tmp_path)
    point = new_point(settings)

    record = run_component(settings, point, search.NAME)

    assert record.status == "ok", record.error
    assert record.counts == {} and record.details["snapshot"] is None
    assert "no open index matches" in record.details["note"]
    assert search.verify(settings, point, record) == []
    assert snapshot_names(search_cfg) == set()


@pytest.mark.fault('path.repo missing',
                   'a permanent error with the docker-compose override to paste; doctor prints the same')
def test_a_repository_outside_path_repo_fails_with_the_compose_override(search_cfg, seeded, tmp_path):
    cfg = search_cfg.model_copy(update={"repository_path": f"/tmp/{unique('outside_')}"})
    settings = settings_for(cfg, tmp_path)
    point = new_point(settings)

    record = run_component(settings, point, search.NAME)

    assert record.status == "failed"
    assert record.error.startswith("PermanentError")
    assert "path.repo" in record.error
    assert ("es01" if cfg.engine == "elasticsearch" else "opensearch01") in record.error
    assert "docker-compose.override.yml" in record.error
    assert not point.path("search_snapshot.json").exists()
    assert point.manifest().status == "failed"


def test_a_repository_registered_elsewhere_is_refused(search_cfg, seeded, tmp_path):
    settings = settings_for(search_cfg, tmp_path)
    search.ensure_repository(search_cfg, search.SnapshotRepo(clients.search_client(search_cfg), search_cfg.engine,
                                                             search_cfg.repository), search.logging.getLogger("t"))
    moved = search_cfg.model_copy(update={"repository_path": search_cfg.repository_path + "_other"})

    with pytest.raises(PermanentError, match="is registered at") as caught:
        search.backup(settings_for(moved, tmp_path), new_point(settings), search.logging.getLogger("t"))
    assert search_cfg.repository_path in str(caught.value)


@pytest.mark.parametrize("search_settings", ["elasticsearch"], indirect=True)
@pytest.mark.fault('wrong Elasticsearch password',
                   'a permanent error naming the user and the server, not retried')
def test_a_wrong_elasticsearch_password_is_permanent_and_not_repeated(search_cfg, tmp_path):
    wrong = unique("wrong-password-")
    cfg = search_cfg.model_copy(update={"password": SecretStr(wrong)})
    settings = settings_for(cfg, tmp_path)
    point = new_point(settings)

    with pytest.raises(PermanentError):
        search.backup(settings, point, point.logger(search.NAME))
    record = run_component_attempt(settings, point, search.NAME)  # a worker's first attempt: recorded at once

    assert record.status == "failed"
    assert "authentication failed" in record.error
    assert wrong not in record.error
    assert wrong not in (point.folder / "backup.log").read_text()
    assert wrong not in point.path("manifest.json").read_text()


def test_a_server_that_is_not_listening_is_a_transient_failure(search_cfg, tmp_path):
    cfg = search_cfg.model_copy(update={"url": "http://127.0.0.1:1"})
    settings = settings_for(cfg, tmp_path)
    point = new_point(settings)

    with pytest.raises(Exception) as caught:
        run_component_attempt(settings, point, search.NAME)

    assert not isinstance(caught.value, PermanentError)
    assert point.manifest().components == {}
    # Once the worker's retries are spent the same failure is recorded.
    record = record_final_failure(settings, point, search.NAME, caught.value)
    assert record.status == "failed" and "Connection" in record.error
