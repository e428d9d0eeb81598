"""A restore from the offsite repository killed while the fetched search repository is copied beside
search.repository_path and registered on the search server: the next restore, and `doctor`, remove what it left
(actors/actions/offsite_leftovers.py), and only what is ours by name and place and not in use."""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.actions.offsite_leftovers import claimed
from actors.search.backup import SnapshotRepo
from core import clients
from core.config import load_settings
from testbed.polling import wait_for
from tests.actors.actions.test_offsite import config_only  # noqa: F401 - fixture
from tests.actors.actions.test_offsite_same_installation import indexed_installation
from tests.faults.harness import CLI, cli, kill, text_of


def said(done: subprocess.CompletedProcess) -> str:
    return " ".join((done.stdout + done.stderr).split())


def ours_registered(client, parent: Path) -> dict[str, str]:
    """{name: location} of the offsite_* repositories registered on the server whose folder is in `parent`."""
    every = client.snapshot.get_repository().body
    return {name: entry["settings"]["location"] for name, entry in every.items() if name.startswith("offsite_")
            and str(entry.get("settings", {}).get("location", "")).startswith(f"{parent}/")}


def folders(parent: Path) -> list[str]:
    return sorted(entry.name for entry in parent.iterdir() if entry.name.startswith("ragflow-backup-"))


@pytest.fixture
def installation(tmp_path, testbed_env, config_only) -> Iterator[tuple[Path, Path, str]]:  # noqa: F811
    """A config backing up RAGFlow's config files and one index of its own on the test bed's Elasticsearch, its
    snapshot repository in a folder of this test's own under path.repo (so only this test's leftovers are there),
    an offsite repository in a folder. Yields (config, the folder holding search.repository_path, index)."""
    root = Path(testbed_env["SNAPSHOT_ROOT"])
    parent = root / uuid.uuid4().hex
    parent.mkdir()
    owner = root.stat()
    os.chown(parent, owner.st_uid, owner.st_gid)  # the search server (another user) makes its repository there
    try:
        with indexed_installation(tmp_path, testbed_env, config_only, repository_parent=parent) as (config, index,
                                                                                                  client):
            try:
                yield config, parent, index
            finally:
                for name in ours_registered(client, parent):  # what a failed test left
                    SnapshotRepo(client, "elasticsearch", name).unregister()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.fault("a restore from the offsite repository SIGKILLed while its fetched search repository is copied "
                   "beside search.repository_path and registered on the search server",
                   "the next restore unregisters the `offsite_<token>` repository, removes its "
                   "`ragflow-backup-offsite_<token>` folder and the point it fetched under the storage root, saying "
                   "each, then restores as usual")
def test_the_restore_after_a_killed_offsite_restore_removes_what_it_left_and_says_so(tmp_path, installation):
    config, parent, index = installation
    settings = load_settings(config)
    client = clients.search_client(settings.search)
    assert cli(config, "backup", "--local").returncode == 0
    assert cli(config, "offsite", "copy").returncode == 0
    repo = SnapshotRepo(client, "elasticsearch", settings.search.repository)
    for snap in repo.snapshots():  # gone from the server: the restore must fetch the repository's copy
        repo.delete(snap["snapshot"])
    client.indices.delete(index=index)
    leader, follower = pty.openpty()  # on a terminal, the restore stops at "Restore now?" with everything in place
    log = tmp_path / "killed.log"
    killed = subprocess.Popen([CLI, "--config", str(config), "restore", "--from", "offsite", "-C", "search"],
                              stdin=follower, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    os.close(follower)
    try:
        wait_for(lambda: "Restore now?" in text_of(log), "the restore to ask before it restores", timeout=300)
    finally:
        kill(killed)
        os.close(leader)
    [left] = ours_registered(client, parent)
    assert folders(parent) == [f"ragflow-backup-{left}", f"ragflow-backup-{left}.lock"]  # its lock is free
    [fetch] = (settings.storage_root / "offsite").glob("restore-*[!k]")  # not its .lock
    assert (fetch / "point").is_dir()  # the point it fetched, in the clear

    restored = cli(config, "restore", "--from", "offsite", "-C", "search", "--yes", timeout=600)

    assert restored.returncode == 0, said(restored)
    assert f"unregistered the search repository {left} a killed restore from offsite left" in said(restored)
    assert f"removed {parent / f'ragflow-backup-{left}'}, the search repository copy" in said(restored)
    assert f"removed {fetch}, the copy of a point a killed restore from offsite fetched" in said(restored)
    assert not fetch.exists()
    assert left not in ours_registered(client, parent)
    assert folders(parent) == []  # this restore's own copy and lock are gone too, as always
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == 3


def leave_leftover(client, parent: Path, name: str) -> Path:
    """The exact leftovers of a killed restore: a copied repository folder, registered read only under `name`."""
    place = parent / f"ragflow-backup-{name}"
    place.mkdir(mode=0o755)
    (place / "index.latest").write_bytes(b"\0" * 8)
    os.chmod(place / "index.latest", 0o644)
    client.snapshot.create_repository(name=name, repository={"type": "fs", "settings": {
        "location": str(place), "readonly": True}})
    return place


def leftovers_row(config: Path) -> str:
    checks = json.loads(cli(config, "doctor", "--json").stdout)["checks"]
    return " ".join(check["detail"] for check in checks if check["name"] == "offsite restore leftovers")


@pytest.mark.fault("what a killed restore from offsite left, while another restore from offsite is using a copy "
                   "of its own beside it",
                   "`doctor` removes the leftovers and says so, and leaves the folder and registration in use "
                   "(its lock held) alone, saying so; folders not named as ours are never touched")
def test_doctor_removes_leftovers_but_not_a_copy_in_use_nor_what_is_not_ours(installation):
    config, parent, _ = installation
    client = clients.search_client(load_settings(config).search)
    stale = leave_leftover(client, parent, "offsite_0badc0de")
    busy = leave_leftover(client, parent, "offsite_00c0ffee")
    (parent / "ragflow-backup-offsite_notours").mkdir()
    (parent / "ragflow-backup-offsite_12345678.d").mkdir()

    with claimed(busy):
        row = leftovers_row(config)
        assert f"removed {stale}" in row and "unregistered the search repository offsite_0badc0de" in row
        assert f"left {busy} alone: a restore from offsite is using it" in row
        assert sorted(ours_registered(client, parent)) == ["offsite_00c0ffee"]
        assert folders(parent) == ["ragflow-backup-offsite_00c0ffee", "ragflow-backup-offsite_00c0ffee.lock",
                                   "ragflow-backup-offsite_12345678.d", "ragflow-backup-offsite_notours"]

    assert f"removed {busy}" in leftovers_row(config)
    assert ours_registered(client, parent) == {}
    assert folders(parent) == ["ragflow-backup-offsite_12345678.d", "ragflow-backup-offsite_notours"]
