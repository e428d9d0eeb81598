"""The offsite copy carries the binlog archive: a snapshot of its own (kind=binlog) holding exactly what the
index vouches for, the live file cut at its indexed size."""
from __future__ import annotations

from actors.actions.offsite import Restic, copy_mirror
from actors.binlog.index import load_index
from core.config import Settings
from tests.actors.binlog.test_retention import archive_of


def test_the_offsite_copy_carries_the_archive_as_its_index_describes_it(tmp_path):
    password = tmp_path / "offsite.pass"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    (tmp_path / "root").mkdir()
    settings = Settings(storage_root=tmp_path / "root", mysql={"enabled": False}, minio={"enabled": False},
                        offsite={"enabled": True, "repository": str(tmp_path / "usb"), "password_file": str(password)})
    archive_of(settings, 3)
    live = settings.layout.binlog_archive / "binlog.000003"
    with open(live, "ab") as appended:  # the archiver appends while the copy runs: unvouched bytes stay home
        appended.write(b" and bytes not yet in the index")
    copy_mirror(settings)
    restic = Restic(settings)
    [snapshot] = restic.snapshots("binlog")
    copied = restic.restore(snapshot, tmp_path / "fetched")
    index = load_index(settings.layout)
    assert sorted(p.name for p in copied.iterdir()) == ["binlog.000001", "binlog.000002", "binlog.000003", "index.json"]
    for entry in index.files:
        assert (copied / entry.name).stat().st_size == entry.size
    assert not settings.layout.offsite_frozen_binlog().exists()
