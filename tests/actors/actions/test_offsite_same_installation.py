"""A restore from the offsite repository into the installation that took the point: the search server has the
point's snapshot in its own repository, so the repository's copy offsite is not fetched (checked on the server,
never assumed); once that snapshot is gone from the server, the copy is fetched again."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from actors.search.backup import SnapshotRepo
from core import clients
from core.config import load_settings
from testbed import settings as tb
from tests.actors.actions.test_offsite import config_only, password_file  # noqa: F401 - fixture
from tests.actors.search.test_backup import put_docs
from tests.conftest import reach, unique
from tests.faults.harness import cli, write_config

NOT_FETCHED = "the search snapshot repository is not fetched: this search server holds the point's snapshot"


def said(done) -> str:
    return " ".join((done.stdout + done.stderr).split())


@contextmanager
def indexed_installation(tmp_path: Path, testbed_env, docker: Path,
                         repository_parent: Path | None = None) -> Iterator[tuple[Path, str, Any]]:
    """A config backing up RAGFlow's config files (in `docker`) and one index of its own (3 documents) on the test
    bed's Elasticsearch, with an offsite repository in a folder; the snapshot repository under `repository_parent`
    when given. Yields (config, index, search client); afterwards the repository's snapshots, its registration
    and the indices are removed."""
    search = tb.search("elasticsearch", testbed_env, repository=unique("repo_"))
    client = clients.search_client(search)
    reach("Elasticsearch", lambda: clients.search_server_version(client))
    prefix = unique("test_")
    index = f"{prefix}ragflow_a"
    put_docs(client, "elasticsearch", index, 3)
    repository_path = search.repository_path if repository_parent is None else str(repository_parent / search.repository)
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(docker),
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "redis": {"enabled": False},
        "search": {"url": search.url, "user": search.user, "password": search.password.get_secret_value(),
                   "repository": search.repository, "repository_path": repository_path,
                   "indices": [f"{prefix}*"]},
        "offsite": {"enabled": True, "repository": str(tmp_path / "usb"),
                    "password_file": str(password_file(tmp_path))}})
    try:
        yield config, index, client
    finally:
        repo = SnapshotRepo(client, "elasticsearch", search.repository)
        if repo.location() is not None:
            for snap in repo.snapshots():
                repo.delete(snap["snapshot"])
            repo.unregister()
        for name in client.indices.get(index=f"{prefix}*", allow_no_indices=True, expand_wildcards="all"):
            client.indices.delete(index=name)


@pytest.fixture
def search_installation(tmp_path, testbed_env, config_only) -> Iterator[tuple[Path, str]]:  # noqa: F811
    """indexed_installation's, with a complete point of both copied offsite. Yields (config, index)."""
    with indexed_installation(tmp_path, testbed_env, config_only) as (config, index, _):
        backup = cli(config, "backup", "--local")
        assert backup.returncode == 0, said(backup)
        copied = cli(config, "offsite", "copy")
        assert copied.returncode == 0 and "not copied" not in copied.stdout, said(copied)
        yield config, index


def test_a_restore_from_offsite_into_the_same_installation_uses_its_own_snapshot_and_fetches_no_copy(
        search_installation):
    config, index = search_installation
    settings = load_settings(config)
    client = clients.search_client(settings.search)
    client.indices.delete(index=index)

    restored = cli(config, "restore", "--from", "offsite", "-C", "search", "--yes", timeout=600)

    assert restored.returncode == 0, said(restored)
    assert NOT_FETCHED in said(restored)
    assert "the point's snapshot is in this search server's repository" in said(restored)
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == 3


def test_the_copy_is_fetched_when_the_search_server_no_longer_has_the_points_snapshot(search_installation):
    config, _ = search_installation
    settings = load_settings(config)
    repo = SnapshotRepo(clients.search_client(settings.search), "elasticsearch", settings.search.repository)
    for snap in repo.snapshots():
        repo.delete(snap["snapshot"])  # the repository's own retention took it, say

    planned = cli(config, "restore", "--from", "offsite", "-C", "search", "--dry-run", "--yes", timeout=600)

    assert "and the search snapshot repository" in said(planned), said(planned)
    assert NOT_FETCHED not in said(planned)
