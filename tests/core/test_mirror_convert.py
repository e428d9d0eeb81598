"""A mirror of the first layout (`docs%/%E6%8A%A5.pdf`) is converted in place on opening: renames only,
the index's paths follow, once."""
from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.mirror_convert import ConversionError
from core.mirror_paths import object_path
from core.mirror_store import Entry, MirrorStore
from tests.core.legacy_mirror import T0, build

CURRENT = {
    "docs/report.pdf": b"report", "知识库/报告.pdf": b"chinese", "a": b"file a", "a/b": b"file a/b",
    "a%": b"a percent", "a/": b"a slash", "../x": b"dots", "nul\x00name": b"nul", "%E6.txt": b"looks escaped",
    "x" * 300: b"long name", "/".join(["😀"] * 250): b"long path", "emoji/😀.txt": b"emoji",
}
OLD = {"docs/report.pdf": [b"report v1", b"report v2"], "gone/deleted.txt": [b"deleted"]}


def index_rows(root) -> list[tuple]:
    with closing(sqlite3.connect(root / ".index.sqlite")) as conn:
        return conn.execute("SELECT key, path FROM objects UNION ALL SELECT key, path FROM versions").fetchall()


def user_version(root) -> int:
    with closing(sqlite3.connect(root / ".index.sqlite")) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def check_converted(store: MirrorStore) -> None:
    """Every object at its new path with its bytes, every version readable, the index says so."""
    for key, data in CURRENT.items():
        entry = store.entry("bkt", key)
        assert entry.path == store.root / object_path("bkt", key, file_mark=key == "a"), key
        assert entry.path.read_bytes() == data and entry.md5 == hashlib.md5(data).hexdigest()
        assert entry.headers == {}  # the first layout kept no content headers: none to restore
    for key, datas in OLD.items():
        assert [v.path.read_bytes() for v in store.versions("bkt", key)] == datas
        assert all(v.headers == {} for v in store.versions("bkt", key))
        assert all(v.path.name.startswith(object_path("bkt", key).name + "%~v") for v in store.versions("bkt", key))
    for _, path in index_rows(store.root):
        assert (store.root / path).is_file() and not path.startswith(".convert")
    assert user_version(store.root) == 2 and not (store.root / ".convert").exists()


def test_opening_a_mirror_of_the_first_layout_moves_every_file_to_its_readable_path(tmp_path):
    root = tmp_path / "m"
    build(root, "bkt", CURRENT, OLD)
    (root / "bkt" / "stray.txt").write_bytes(b"no row knows me")
    assert (root / "bkt" / "docs%" / "report.pdf").is_file() and user_version(root) == 0
    inode = (root / "bkt" / "docs%" / "report.pdf").stat().st_ino
    store = MirrorStore(root)
    check_converted(store)
    assert (root / "bkt" / "docs" / "report.pdf").stat().st_ino == inode, "renamed, not copied"
    assert (root / "bkt" / "知识库" / "报告.pdf").read_bytes() == b"chinese"
    assert not (root / "bkt" / "docs%").exists() and not (root / "bkt" / "%E7%9F%A5%E8%AF%86%E5%BA%93%").exists()
    assert (root / ".orphans" / "bkt" / "stray.txt").read_bytes() == b"no row knows me", "a file no row knew is kept"
    at = T0 + timedelta(hours=1)
    assert store.state_at("bkt", at)["docs/report.pdf"].path.read_bytes() == b"report"
    assert store.state_at("bkt", T0 + timedelta(seconds=30))["gone/deleted.txt"].path.read_bytes() == b"deleted"


def test_a_converted_mirror_is_not_converted_again_and_keeps_working(tmp_path):
    root = tmp_path / "m"
    build(root, "bkt", CURRENT, OLD)
    MirrorStore(root).close()
    before = sorted((str(p), p.stat().st_ino) for p in root.rglob("*") if p.is_file() and ".index" not in p.name)
    store = MirrorStore(root)
    after = sorted((str(p), p.stat().st_ino) for p in root.rglob("*") if p.is_file() and ".index" not in p.name)
    assert after == before
    data = b"report v3"
    temp = store.temp_file("bkt")
    temp.write_bytes(data)
    store.commit("bkt", "docs/report.pdf", temp, Entry(size=len(data), etag=hashlib.md5(data).hexdigest(),
                                                       last_modified=T0 + timedelta(days=1)), T0 + timedelta(days=1))
    assert (root / "bkt" / "docs" / "report.pdf").read_bytes() == data
    assert [v.path.read_bytes() for v in store.versions("bkt", "docs/report.pdf")] == [b"report v1", b"report v2",
                                                                                       b"report"]
    assert store.remove("bkt", "a/b", T0 + timedelta(days=2))
    assert (root / "bkt" / "a%~file").read_bytes() == b"file a"


def test_a_conversion_that_cannot_move_a_file_says_so_and_resumes_once_fixed(tmp_path):
    root = tmp_path / "m"
    build(root, "bkt", CURRENT, OLD)
    (root / ".convert").write_bytes(b"in the way")  # the staging folder cannot be made
    with pytest.raises(ConversionError, match=r"moving bkt/.* to \.convert/.*start again: the conversion resumes"):
        MirrorStore(root)
    assert (root / "bkt" / "docs%" / "report.pdf").read_bytes() == b"report", "nothing moved, nothing lost"
    (root / ".convert").unlink()
    check_converted(MirrorStore(root))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet="ab/.%~E2\x00报", max_size=7), min_size=1, max_size=15, unique=True))
def test_any_first_layout_mirror_converts_with_every_object_and_version_in_place(keys):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "m"
        current = {key: f"current {n}".encode() for n, key in enumerate(keys)}
        build(root, "bkt", current, {key: [f"old {n}".encode()] for n, key in enumerate(keys)})
        store = MirrorStore(root)
        for n, key in enumerate(keys):
            assert store.entry("bkt", key).path.read_bytes() == current[key]
            assert store.entry("bkt", key).path.parent.relative_to(root / "bkt") == object_path("bkt", key).parent \
                .relative_to("bkt")
            assert [v.path.read_bytes() for v in store.versions("bkt", key)] == [f"old {n}".encode()]
        assert not (root / ".orphans").exists() and not (root / ".convert").exists()
        store.close()
