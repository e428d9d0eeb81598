"""Another installation's storage root, read only (core/source_root.py): its mirror index is copied
without a byte of it, or a -wal/-shm beside it, changing; and only a real other root is accepted."""
from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.component import PermanentError
from core.config import Settings
from core.mirror_paths import INDEX_FILE
from core.mirror_store import Entry, MirrorStore
from core.source_root import opened, snapshot_index

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def mirror_with(root: Path, keys: list[str]) -> Path:
    store = MirrorStore(root)
    for key in keys:
        temp = store.temp_file("kb1")
        temp.write_bytes(key.encode())
        store.commit("kb1", key, temp, Entry(size=len(key), etag=f"e-{key}"), NOW)
    store.close()
    return root / INDEX_FILE


def files_of(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(f"{INDEX_FILE}*"))}


def keys_in(index: Path) -> list[str]:
    with closing(sqlite3.connect(index)) as conn:
        return [row[0] for row in conn.execute("SELECT key FROM objects ORDER BY key")]


def test_an_index_nobody_has_open_is_copied_and_nothing_appears_beside_it(tmp_path):
    index = mirror_with(tmp_path / "mirror", ["a", "b"])
    before = files_of(index.parent)
    assert sorted(before) == [INDEX_FILE]  # closed: no -wal, no -shm

    snapshot_index(index, tmp_path / "copy.sqlite")

    assert files_of(index.parent) == before
    assert keys_in(tmp_path / "copy.sqlite") == ["a", "b"]


def test_an_index_its_owner_holds_open_is_copied_with_what_its_wal_holds_and_its_files_unchanged(tmp_path):
    index = mirror_with(tmp_path / "mirror", ["a"])
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from datetime import datetime, timezone
        from core.mirror_store import Entry, MirrorStore
        store = MirrorStore({str(tmp_path / 'mirror')!r})
        temp = store.temp_file("kb1")
        temp.write_bytes(b"b")
        store.commit("kb1", "b", temp, Entry(size=1, etag="e-b"), datetime.now(timezone.utc))
        print("ready", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert owner.stdout.readline().strip() == "ready"
        before = files_of(index.parent)
        assert f"{INDEX_FILE}-wal" in before  # the owner's commit is in its WAL, not yet in the file

        snapshot_index(index, tmp_path / "copy.sqlite")

        after = files_of(index.parent)
        # The -shm is the readers' and writer's shared memory, not data: a reader takes its read mark there
        # (that is how it reads one snapshot without blocking the owner); the index and its WAL are untouched.
        assert sorted(after) == sorted(before)
        assert {k: v for k, v in after.items() if not k.endswith("-shm")} == \
               {k: v for k, v in before.items() if not k.endswith("-shm")}
        assert keys_in(tmp_path / "copy.sqlite") == ["a", "b"]
    finally:
        owner.communicate("", timeout=30)


def test_a_restore_from_its_own_root_or_from_a_folder_that_is_no_root_is_refused(tmp_path):
    settings = Settings(storage_root=tmp_path / "ours", minio={"enabled": False})
    with pytest.raises(PermanentError, match="this config's own storage root"):
        with opened(settings, tmp_path / "ours"):
            pass
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(PermanentError, match="not a storage root"):
        with opened(settings, tmp_path / "elsewhere"):
            pass


def test_a_planted_wal_symlink_beside_the_index_is_refused_and_never_followed(tmp_path):
    index = mirror_with(tmp_path / "mirror", ["a"])
    secret = tmp_path / "secret"
    secret.write_text("not the mirror's")
    Path(f"{index}-wal").symlink_to(secret)

    with pytest.raises(PermanentError, match="symlink"):
        snapshot_index(index, tmp_path / "copy.sqlite")

    assert not Path(f"{tmp_path / 'copy.sqlite'}-wal").exists()
