"""Interval search snapshots offsite: their records travel inside the copy of the search snapshot repository
(kind=search_repo, actors/actions/offsite.py), and `restore --at T --from offsite` brings search back from the
newest one done by T, with the chunks from the fetched copy: a real restic repository (a folder) and the test
bed's Elasticsearch."""
from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from actors.actions.offsite import OffsitePermanent, Restic
from actors.actions.offsite_choice import point_at, search_repo_for_moment
from actors.search import backup as search
from actors.search import interval
from core import clients
from core.config import load_settings
from core.layout import SEARCH_INTERVALS_IN_REPO_COPY
from core.restic import Snapshot
from tests.actors.actions.test_offsite import cli, config_only, password_file, write_config  # noqa: F401 - fixture
from tests.actors.search.test_backup import search_cfg, seeded  # noqa: F401 - fixtures used by name

log = logging.getLogger("test.offsite.intervals")


def add_docs(cfg, index: str, first: int, count: int) -> None:
    client = clients.search_client(cfg)
    for n in range(first, first + count):
        client.index(index=index, id=str(n), document={"content_with_weight": f"later chunk {n}", "kb_id": "kb1"})
    client.indices.refresh(index=index)


def search_config(tmp_path: Path, docker: Path, cfg) -> Path:
    section = {**cfg.model_dump(mode="json"), "password": cfg.password.get_secret_value()}
    return write_config(tmp_path / "config.yml", storage_root=str(tmp_path / "backups"), ragflow_dir=str(docker),
                        mysql={"enabled": False}, minio={"enabled": False}, search=section,
                        offsite={"enabled": True, "repository": str(tmp_path / "usb" / "ragflow"),
                                 "password_file": str(password_file(tmp_path))})


@pytest.mark.parametrize("search_settings", ["elasticsearch"], indirect=True)
def test_restore_at_from_offsite_brings_search_back_from_an_interval_snapshot_the_repository_copy_holds(
        search_cfg, seeded, index_prefix, tmp_path, config_only):  # noqa: F811 - fixtures imported above
    config = search_config(tmp_path, config_only, search_cfg)
    settings = load_settings(config)
    index = f"{index_prefix}ragflow_tenant_a"
    backed_up = cli(config, "backup", "--local", "-C", "search")
    assert backed_up.exit_code == 0, backed_up.output
    add_docs(search_cfg, index, 100, 4)  # after the point: only the interval snapshot holds them
    taken = interval.take(settings, log)
    at = datetime.now(timezone.utc)
    add_docs(search_cfg, index, 200, 5)  # after --at: must not come back
    copied = cli(config, "offsite", "copy")
    assert copied.exit_code == 0, copied.output

    [repo_copy] = [s for s in Restic(settings).snapshots() if s.kind == "search_repo"]
    listed = Restic(settings).run("ls", repo_copy.id)
    assert f"{SEARCH_INTERVALS_IN_REPO_COPY}/{taken.name}/{search.ARTIFACT}" in listed  # the record travelled
    repo = search.SnapshotRepo(clients.search_client(search_cfg), search_cfg.engine, search_cfg.repository)
    for info in repo.snapshots():  # the search server lost its snapshots ...
        repo.delete(info["snapshot"])
    shutil.rmtree(settings.storage_root)  # ... and the NAS is gone

    restored = cli(config, "restore", "--from", "offsite", "--at", at.isoformat(), "-C", "search", "--yes")

    said = " ".join(restored.output.split())
    assert restored.exit_code == 0, restored.output
    assert "interval snapshot at" in said and f"{taken.name}, from the offsite copy" in said
    assert "fetched the source's search snapshot repository" in said  # the chunks came from the copy
    client = clients.search_client(search_cfg)
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == seeded[index] + 4


def test_restore_at_from_offsite_takes_the_point_before_the_moment_and_the_first_repository_copy_after_it():
    day = datetime(2026, 11, 24, 2, 0, 0, 123456, tzinfo=timezone.utc)

    def snap(name: str, at: datetime, **tags: str) -> Snapshot:
        return Snapshot(name, at, ["/x"], {key: [value] for key, value in tags.items()}, "nas")

    monday = snap("p1", day, kind="point", point="daily/2026-11-24")
    tuesday = snap("p2", day + timedelta(days=1), kind="point", point="daily/2026-11-25")
    morning = snap("a", day + timedelta(hours=6), kind="search_repo", newest_point_at="20261124T020000Z")
    evening = snap("b", day + timedelta(hours=18), kind="search_repo", newest_point_at="20261124T020000Z")
    night = snap("c", day + timedelta(hours=23), kind="search_repo", newest_point_at="20261124T020000Z")
    before_the_point = snap("d", day + timedelta(hours=12), kind="search_repo", newest_point_at="20261123T020000Z")
    snaps = [monday, morning, before_the_point, evening, night, tuesday]
    noon = day + timedelta(hours=12)

    assert point_at(snaps, noon) is monday  # not the newest point: it was made after the moment
    assert search_repo_for_moment(snaps, monday, noon) is evening  # holds the interval records up to noon
    assert search_repo_for_moment(snaps, monday, day + timedelta(days=3)) is morning  # none after: as without --at
    assert search_repo_for_moment(snaps, monday, None) is morning
    with pytest.raises(OffsitePermanent, match="no point made at or before"):
        point_at(snaps, day - timedelta(hours=1))
