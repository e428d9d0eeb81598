"""`move --from-offsite --at T`: the point and the search snapshot taken by T come back, as `restore --from offsite
--at T` brings them, and what a killed restore from offsite left is removed first: a real restic repository (a
folder) and the test bed's Elasticsearch."""
from __future__ import annotations

import logging
import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from actors.search import backup as search
from actors.search import interval
from core import clients
from core.config import load_settings
from tests.actors.actions.test_offsite import cli, config_only  # noqa: F401 - a fixture
from tests.actors.actions.test_offsite_intervals import add_docs, search_config
from tests.actors.search.test_backup import search_cfg, seeded  # noqa: F401 - fixtures used by name
from tests.faults.harness import CLI, write_config

log = logging.getLogger("test.move.at")


@pytest.mark.parametrize("search_settings", ["elasticsearch"], indirect=True)
def test_a_move_at_a_moment_brings_search_back_as_it_was_then_after_removing_a_killed_fetch(
        search_cfg, seeded, index_prefix, tmp_path, config_only):  # noqa: F811 - fixtures imported above
    config = search_config(tmp_path, config_only, search_cfg)
    settings = load_settings(config)
    index = f"{index_prefix}ragflow_tenant_a"
    assert cli(config, "backup", "--local").exit_code == 0
    add_docs(search_cfg, index, 100, 4)  # after the point: only the interval snapshot holds them
    interval.take(settings, log)
    at = datetime.now(timezone.utc)
    add_docs(search_cfg, index, 200, 5)  # after --at: must not come back
    copied = cli(config, "offsite", "copy")
    assert copied.exit_code == 0, copied.output
    repo = search.SnapshotRepo(clients.search_client(search_cfg), search_cfg.engine, search_cfg.repository)
    for info in repo.snapshots():  # the new machine's search server has none of the snapshots ...
        repo.delete(info["snapshot"])
    shutil.rmtree(settings.storage_root)  # ... and no storage root but what a killed move fetched there
    killed = settings.storage_root / "offsite" / "restore-0a1b2c3d"
    (killed / "point").mkdir(parents=True, mode=0o700)
    (settings.storage_root / "offsite").chmod(0o700)
    settings.storage_root.chmod(0o700)

    moved = cli(config, "move", "--from-offsite", "--at", at.isoformat(), "--yes", "--wait-minutes", "1")

    said = " ".join(moved.output.split())
    assert moved.exit_code == 0, moved.output
    assert f"removed {killed}, the copy of a point a killed restore from offsite fetched" in said
    assert not killed.exists()
    assert "(interval snapshot at" in said and "from the offsite copy" in said
    client = clients.search_client(search_cfg)
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == seeded[index] + 4


def test_a_move_at_a_moment_that_is_not_a_date_is_refused_before_anything_is_done(tmp_path):
    config = write_config(tmp_path / "config.yml", {"storage_root": str(tmp_path / "backups")})
    done = subprocess.run([CLI, "-c", str(config), "move", "--from-offsite", "--at", "yesterday", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--at 'yesterday' is not a date and time" in " ".join((done.stdout + done.stderr).split())
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "backups").exists()
