"""What a restore from another installation's offsite copy does with the search snapshot repository it
fetched (untrusted): only plain folders and files reach a folder the search server reads."""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from actors.actions.foreign import fetched_repository
from core.component import PermanentError
from core.config import load_settings
from core.manifest import ComponentRecord
from core.points import Point, Storage
from tests.faults.harness import write_config


def settings_and_point(tmp_path: Path, testbed_env: dict) -> tuple:
    """This installation's config (its repository_path in tmp_path) and a point of another one whose search
    record names a repository this server does not know."""
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(tmp_path / "docker"),
        "mysql": {"enabled": False}, "minio": {"enabled": False}, "redis": {"enabled": False},
        "search": {"url": testbed_env["ES_URL"], "password": testbed_env["ES_PASSWORD"],
                   "repository": f"repo_{uuid.uuid4().hex[:8]}",
                   "repository_path": str(tmp_path / "es-repos" / "ours")},
    })
    (tmp_path / "es-repos").mkdir()
    now = datetime.now(timezone.utc)
    point: Point = Storage(tmp_path / "source").new_point(["search"], at=now)
    point.save_record(ComponentRecord(component="search", status="ok", started_at=now, finished_at=now, details={
        "snapshot": "snap-1", "uuid": "not-here", "repository": f"theirs_{uuid.uuid4().hex[:8]}",
        "repository_path": "/elsewhere/theirs"}))
    return load_settings(config), point


@pytest.mark.fault("hostile offsite repository: the copy of the search snapshot repository a restore fetched holds a "
                   "symlink (to /etc/passwd)",
                   "refused before any search server sees it, naming the entry; the folder made beside "
                   "search.repository_path removed; nothing registered, nothing restored")
def test_a_fetched_search_repository_holding_a_symlink_is_refused_and_nothing_is_left(tmp_path, testbed_env):
    settings, point = settings_and_point(tmp_path, testbed_env)
    fetched = tmp_path / "fetched"
    (fetched / "indices").mkdir(parents=True)
    (fetched / "index-0").write_bytes(b"{}")
    os.symlink("/etc/passwd", fetched / "indices" / "meta-x.dat")

    with pytest.raises(PermanentError, match="symbolic link"):
        with fetched_repository(settings, point, fetched):
            pass

    assert list((tmp_path / "es-repos").iterdir()) == []


@pytest.mark.fault("a restore from the offsite repository whose source agent could not copy its search snapshot "
                   "repository",
                   "refused before any search index or safety point is touched, saying why (the source's `status` says it) and what to do "
                   "(copy the folder and use --from-root, or leave search out)")
def test_a_point_whose_search_repository_never_went_offsite_is_refused_saying_what_to_do(tmp_path, testbed_env):
    settings, point = settings_and_point(tmp_path, testbed_env)

    with pytest.raises(PermanentError, match="no copy of the search snapshot repository") as refused:
        with fetched_repository(settings, point, None):
            pass

    assert "--from-root" in str(refused.value) and "no search index was touched" in str(refused.value)
