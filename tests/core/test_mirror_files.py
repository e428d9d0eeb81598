"""A tampered mirror index never makes the mirror move, copy in or delete a file outside it (core/mirror_files.py)."""
from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from core.mirror_files import held_file, inside
from core.mirror_store import MirrorStore
from tests.core.test_mirror_store import T0, bytes_at, put, write_temp


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("deleted-by-remove", "deleted-by-prune", "moved-by-settle", "linked-as-version"):
        (folder / name).write_text(f"{name}: not the mirror's\n")
    return folder


def tamper(store: MirrorStore, statement: str, *args) -> None:
    with sqlite3.connect(store.index) as conn:
        conn.execute(statement, args)


def test_index_paths_the_mirror_could_not_have_written_name_no_file(tmp_path):
    root = tmp_path / "m"
    (root / "bkt").mkdir(parents=True)
    (root / "bkt" / "a.txt").write_text("a")
    (root / "planted").symlink_to(tmp_path)
    assert inside(root, "bkt/a.txt") == root / "bkt" / "a.txt" and held_file(root, "bkt/a.txt") is not None
    for hostile in ("/etc/passwd", "../outside/x", "bkt/../../x", "", "bkt//a.txt", "planted/x", None, 7):
        assert inside(root, hostile) is None, hostile
    (root / "bkt" / "link").symlink_to(root / "bkt" / "a.txt")
    assert inside(root, "bkt/link") is not None and held_file(root, "bkt/link") is None  # a link is no mirror file


@pytest.mark.fault("hostile storage: mirror index rows (current, pending, versions) whose paths name files outside "
                   "the mirror ('../', absolute, through a planted symlink) while the agent mirrors, removes and "
                   "prunes",
                   "no file outside the mirror is deleted, renamed into it or linked into its versions, and no new "
                   "bytes are placed outside it; a hostile pending row is forgotten (the key is fetched again), a hostile version row is dropped by the "
                   "prune without touching its file")
def test_a_tampered_index_never_touches_a_file_outside_the_mirror(tmp_path, outside):
    store = MirrorStore(tmp_path / "m")
    for key in ("removed", "overwritten", "pending", "placed"):
        put(store, key, b"mirrored", T0)
    temp = write_temp(store, b"new bytes due to be placed")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    escape = "../outside"  # index paths are relative to the mirror folder m/, beside outside/
    tamper(store, "UPDATE objects SET path=? WHERE key='removed'", f"{escape}/deleted-by-remove")
    tamper(store, "UPDATE objects SET path=? WHERE key='overwritten'", str(outside / "linked-as-version"))
    tamper(store, "UPDATE objects SET pending=?, pending_ino=? WHERE key='pending'", f"{escape}/moved-by-settle",
           (outside / "moved-by-settle").stat().st_ino)
    tamper(store, "UPDATE objects SET path=?, pending=?, pending_ino=? WHERE key='placed'", f"{escape}/placed-here",
           str(temp.relative_to(store.root)), temp.stat().st_ino)
    tamper(store, "INSERT INTO versions (bucket, key, path, size, etag, metadata, superseded_at, reason) "
                  "VALUES ('bkt', 'old', ?, 1, 'e', '{}', '2000-01-01T00:00:00.000000Z', 'deleted')",
           f"{escape}/deleted-by-prune")

    reopened = MirrorStore(tmp_path / "m")  # opening settles pending rows
    assert reopened.remove("bkt", "removed", T0 + timedelta(seconds=5))
    assert put(reopened, "overwritten", b"new bytes", T0 + timedelta(seconds=10))
    assert reopened.prune_versions(T0) == 1

    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert reopened.entry("bkt", "pending") is None  # forgotten: the next mirror run fetches it again
    assert reopened.entry("bkt", "placed") is None
    assert reopened.versions("bkt", "overwritten") == []  # the outside file never became a version of it
    assert bytes_at(reopened, T0 + timedelta(seconds=20)) == {"overwritten": b"new bytes"}
    assert not any(p.is_symlink() or p.stat().st_ino in {q.stat().st_ino for q in outside.iterdir()}
                   for p in (tmp_path / "m").rglob("*") if p.is_file())
