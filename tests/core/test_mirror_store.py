"""The mirror's disk side without a server: key encoding, versions, point-in-time state, crash safety."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import mirror_store
from core.mirror_convert import FORMAT
from core.mirror_paths import decode_key, encode_key
from core.mirror_store import Entry, MirrorStore
from tests.core.legacy_mirror import SCHEMA as BEFORE_HEADERS

UTC = timezone.utc
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

TRICKY = [
    "docs/report.pdf", "a", "a/b", "a/", "a//b", "/a", "", ".", "..", "../../etc/passwd", "a/../../b", "dir/./x",
    ".hidden", "..dots", "back\\slash", "nul\x00byte", "Case.txt", "case.txt", "%2e%2e/x", "%2E%2E/x", "%2E", "%_",
    "%", "a%/b", "a%", "%~long%/x", "знания/файл.pdf", "emoji/😀.txt", "x" * 1024, "x" * 1025, "é" * 300,
    "/".join(["😀"] * 204), "/".join(["😀"] * 203), "trail/", "trail", "~", "%7E", "a%v20250101T000000000000Z-abcd",
]


def check_safe(relative: PurePosixPath) -> None:
    assert not relative.is_absolute()
    assert relative.parts, "an empty path"
    for part in relative.parts:
        assert part not in ("", ".", ".."), relative
        assert "\x00" not in part and "/" not in part
        assert len(part.encode("utf-8", "surrogatepass")) <= 255 - len("%~file"), "no room left for '%~file'"
    assert len(str(relative)) <= 3100


def test_ordinary_keys_stay_at_their_own_paths_utf8_as_it_is():
    for key in ("docs/report.pdf", "kb-1/file_2.txt", "0123abcdef/thumbnail_xyz.png", "知识库/报告.pdf",
                "знания/файл.pdf", "emoji/😀 notes.txt", "100% done.pdf", "a b/c~d (1).txt", ".hidden/x"):
        assert str(encode_key(key)) == key


@pytest.mark.fault('hostile object keys: path encoding',
                   "'../' becomes '%2E./', NUL '%00', empty segments '%~empty'; no two keys collide")
def test_hostile_keys_become_safe_distinct_relative_paths():
    seen: dict[PurePosixPath, str] = {}
    for key in TRICKY:
        relative = encode_key(key)
        check_safe(relative)
        assert seen.setdefault(relative, key) == key, f"{key!r} and {seen[relative]!r} collide"
        assert decode_key(relative) in (key, None), "every path that is not hashed reads back as its key"
    assert encode_key("../../etc/passwd").parts == ("%2E.", "%2E.", "etc", "passwd")
    assert "\x00" not in str(encode_key("nul\x00byte")) and "%00" in str(encode_key("nul\x00byte"))
    assert encode_key("a//b").parts == ("a", "%~empty", "b")
    assert str(encode_key("%2E%2E/x")) == "%252E%252E/x", "a key's own escapes are escaped again"


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab.%~/2EF_\x00é😀 ")) | st.characters(), max_size=14),
                min_size=2, max_size=2, unique=True))
def test_two_different_keys_never_share_a_path(keys):
    first, second = keys
    assert encode_key(first) != encode_key(second)
    for key in keys:
        check_safe(encode_key(key))
        assert decode_key(encode_key(key)) == key


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("xé😀%~/.")), min_size=150, max_size=1400))
def test_long_keys_are_shortened_safely_and_keep_apart(key):
    relative = encode_key(key)
    check_safe(relative)
    assert decode_key(relative) in (key, None)
    assert encode_key(key + "x") != relative and encode_key(key[:-1]) != relative


def test_names_up_to_249_bytes_stay_as_they_are_and_longer_ones_are_shortened_with_a_hash():
    assert str(encode_key("报" * 83)) == "报" * 83, "249 bytes"
    a, b = encode_key("x" * 300 + "a"), encode_key("x" * 300 + "b")
    assert a != b and "%~" in a.name and a.name.startswith("x" * 100)
    assert len(encode_key("报" * 84).name.encode()) <= 215


def test_a_name_at_the_limit_keeps_its_versions_and_makes_way_for_a_folder(tmp_path):
    store, name = MirrorStore(tmp_path / "m"), "报" * 83
    for n in range(3):
        put(store, name, f"v{n}".encode(), T0 + timedelta(minutes=n))
    put(store, f"{name}/inside", b"in", T0)
    assert (store.root / "bkt" / f"{name}%~file").read_bytes() == b"v2"
    assert (store.root / "bkt" / name / "inside").read_bytes() == b"in"
    versions = store.versions("bkt", name)
    assert [v.path.read_bytes() for v in versions] == [b"v0", b"v1"] and len({v.path for v in versions}) == 2
    assert all(len(v.path.name.encode()) <= 255 for v in versions)


def write_temp(store: MirrorStore, data: bytes) -> Path:
    temp = store.temp_file("bkt")
    temp.write_bytes(data)
    return temp


def put(store: MirrorStore, key: str, data: bytes, at: datetime, **extra) -> bool:
    entry = Entry(size=len(data), etag=hashlib.md5(data).hexdigest(), content_type="text/plain",
                  metadata=extra.pop("metadata", {}), last_modified=at, md5=hashlib.md5(data).hexdigest(),
                  seen_at=extra.pop("seen_at", at), headers=extra.pop("headers", {}))
    return store.commit("bkt", key, write_temp(store, data), entry, extra.pop("now", at + timedelta(seconds=1)))


def bytes_at(store: MirrorStore, when: datetime) -> dict[str, bytes]:
    return {key: ref.path.read_bytes() for key, ref in store.state_at("bkt", when).items()}


def test_content_headers_are_kept_with_the_object_and_with_each_version_it_leaves(tmp_path):
    store = MirrorStore(tmp_path / "m")
    gzip = {"content-encoding": "gzip", "cache-control": "max-age=60"}
    put(store, "page", b"one", T0, headers=gzip)
    put(store, "page", b"two", T0 + timedelta(minutes=10), headers={"content-language": "de"})

    assert store.entry("bkt", "page").headers == {"content-language": "de"}
    assert [v.headers for v in store.versions("bkt", "page")] == [gzip]
    assert store.state_at("bkt", T0 + timedelta(minutes=5))["page"].headers == gzip
    assert store.state_at("bkt", T0 + timedelta(minutes=15))["page"].headers == {"content-language": "de"}


def test_an_index_from_before_content_headers_gains_the_column_and_its_rows_have_none(tmp_path):
    store = MirrorStore(tmp_path / "m")
    put(store, "old", b"old bytes", T0)
    store.close()
    with closing(sqlite3.connect(store.index)) as conn:  # the same index as it was before the column
        rows = conn.execute("SELECT bucket, key, path, size, etag, content_type, metadata, md5, last_modified, "
                            "seen_at, mirrored_at FROM objects").fetchall()
    store.index.unlink()
    with closing(sqlite3.connect(store.index, isolation_level=None)) as conn:
        for statement in filter(str.strip, BEFORE_HEADERS.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={FORMAT}")
        conn.executemany("INSERT INTO objects (bucket, key, path, size, etag, content_type, metadata, md5, "
                         "last_modified, seen_at, mirrored_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    reopened = MirrorStore(tmp_path / "m")
    assert reopened.entry("bkt", "old").headers == {}
    put(reopened, "old", b"new bytes", T0 + timedelta(minutes=1), headers={"content-encoding": "gzip"})
    assert [v.headers for v in reopened.versions("bkt", "old")] == [{}]
    assert reopened.entry("bkt", "old").headers == {"content-encoding": "gzip"}


@pytest.mark.parametrize(("column", "value", "words"), [
    ("metadata", "not json", "Expecting value"),
    ("headers", "[1, 2", "Expecting"),
    ("size", "big", "wrong kind"),
    ("size", -1, "wrong kind"),
    ("path", b"docs/a.txt", "wrong kind"),  # a blob, where a mirror writes text
    ("last_modified", "2024 or so", "holds '2024 or so' where a time belongs"),
])
def test_an_index_row_no_mirror_wrote_is_a_damaged_index_naming_the_key(tmp_path, column, value, words):
    store = MirrorStore(tmp_path / "m")
    put(store, "docs/a.txt", b"one", T0)
    with closing(sqlite3.connect(store.index)) as conn, conn:
        conn.execute(f"UPDATE objects SET {column}=? WHERE key='docs/a.txt'", (value,))
    with pytest.raises(mirror_store.DamagedIndex, match=f"row for 'docs/a.txt' cannot be read.*{words}"):
        store.state_at("bkt", T0 + timedelta(hours=1))
    if column in ("metadata", "headers", "last_modified"):  # what the mirror itself reads of a row
        with pytest.raises(mirror_store.DamagedIndex, match=f"row for 'docs/a.txt' cannot be read.*{words}"):
            store.entry("bkt", "docs/a.txt")


def test_overwrites_and_deletes_keep_versions_and_state_at_answers_for_any_moment(tmp_path):
    store = MirrorStore(tmp_path / "m")
    assert put(store, "docs/a.txt", b"one", T0, metadata={"author": "x"})
    assert not put(store, "docs/a.txt", b"one", T0), "the same bytes again change nothing"
    assert put(store, "docs/a.txt", b"two", T0 + timedelta(minutes=10))
    assert put(store, "b", b"bee", T0 + timedelta(minutes=5))
    assert store.remove("bkt", "b", T0 + timedelta(minutes=20))
    assert not store.remove("bkt", "b", T0 + timedelta(minutes=21)), "removing twice is harmless"

    assert store.path_of("bkt", "docs/a.txt").read_bytes() == b"two"
    assert not store.path_of("bkt", "b").exists()
    assert [(v.reason, v.path.read_bytes()) for v in store.versions("bkt", "docs/a.txt")] == [("overwritten", b"one")]
    assert [(v.reason, v.path.read_bytes()) for v in store.versions("bkt", "b")] == [("deleted", b"bee")]
    assert bytes_at(store, T0 - timedelta(seconds=1)) == {}
    assert bytes_at(store, T0 + timedelta(minutes=1)) == {"docs/a.txt": b"one"}
    assert bytes_at(store, T0 + timedelta(minutes=6)) == {"docs/a.txt": b"one", "b": b"bee"}
    assert bytes_at(store, T0 + timedelta(minutes=15)) == {"docs/a.txt": b"two", "b": b"bee"}
    assert bytes_at(store, T0 + timedelta(minutes=30)) == {"docs/a.txt": b"two"}
    assert store.state_at("bkt", T0 + timedelta(minutes=1))["docs/a.txt"].metadata == {"author": "x"}
    assert store.stats() == {"objects": 1, "bytes": 3, "versions": 2, "version_bytes": 6,
                             "buckets": {"bkt": {"objects": 1, "bytes": 3, "versions": 2, "version_bytes": 6}}}
    assert list(store.keys("bkt")) == ["docs/a.txt"] and store.buckets() == ["bkt"]


def test_every_file_and_folder_is_private_and_inside_the_root(tmp_path):
    store = MirrorStore(tmp_path / "m")
    for i, key in enumerate(TRICKY):
        put(store, key, f"v1 {i}".encode(), T0)
        put(store, key, f"v2 {i}".encode(), T0 + timedelta(hours=1))
    root = store.root.resolve()
    for path in store.root.rglob("*"):
        assert root in path.resolve().parents
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {oct(mode)}"
    state = bytes_at(store, T0 + timedelta(hours=2))
    assert state == {key: f"v2 {i}".encode() for i, key in enumerate(TRICKY)}
    assert bytes_at(store, T0 + timedelta(minutes=1)) == {key: f"v1 {i}".encode() for i, key in enumerate(TRICKY)}


def test_a_late_task_never_rolls_the_mirror_back(tmp_path):
    store = MirrorStore(tmp_path / "m")
    put(store, "k", b"new", T0 + timedelta(minutes=5), seen_at=T0 + timedelta(minutes=5))
    assert not put(store, "k", b"old", T0, seen_at=T0), "an older look at the source must lose"
    assert not store.remove("bkt", "k", T0 + timedelta(minutes=6), seen_at=T0 + timedelta(minutes=1))
    assert store.path_of("bkt", "k").read_bytes() == b"new"
    assert store.remove("bkt", "k", T0 + timedelta(minutes=7), seen_at=T0 + timedelta(minutes=6))
    assert not put(store, "k", b"new", T0 + timedelta(minutes=5), seen_at=T0 + timedelta(minutes=5)), \
        "a copy seen before the deletion must not resurrect the key"
    assert put(store, "k", b"again", T0 + timedelta(minutes=8), seen_at=T0 + timedelta(minutes=8))


def test_a_failed_rename_keeps_the_old_bytes_and_the_next_access_finishes_the_job(tmp_path, monkeypatch):
    store = MirrorStore(tmp_path / "m")
    put(store, "k", b"old", T0)
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise OSError("injected: disk went away")
        os.replace(src, dst)

    monkeypatch.setattr(mirror_store, "_replace", failing_replace)
    with pytest.raises(OSError, match="injected"):
        put(store, "k", b"new", T0 + timedelta(minutes=1))
    assert store.path_of("bkt", "k").read_bytes() == b"old", "never a half file under the current name"
    assert [v.path.read_bytes() for v in store.versions("bkt", "k")] == [b"old"]
    assert store.entry("bkt", "k").etag == hashlib.md5(b"new").hexdigest()  # this access rolls forward
    assert store.path_of("bkt", "k").read_bytes() == b"new"
    assert bytes_at(store, T0 + timedelta(seconds=30)) == {"k": b"old"}


CRASHER = """
import hashlib, os, sys
from datetime import datetime, timezone
from pathlib import Path
from core import mirror_store
store = mirror_store.MirrorStore(Path(sys.argv[1]))
mirror_store._replace = lambda src, dst: os._exit(9)  # the process dies right before the rename
data = b"new"
temp = store.temp_file("bkt"); temp.write_bytes(data)
at = datetime(2025, 1, 1, 13, tzinfo=timezone.utc)
entry = mirror_store.Entry(size=3, etag=hashlib.md5(data).hexdigest(), last_modified=at)
store.commit("bkt", "k", temp, entry, at)
"""


@pytest.mark.fault('process killed in the middle of a mirror commit',
                   'nothing is lost; the next open finishes the half-done step')
def test_a_process_killed_mid_commit_loses_nothing_and_reopening_repairs_the_mirror(tmp_path):
    root = tmp_path / "m"
    store = MirrorStore(root)
    put(store, "k", b"old", T0)
    store.close()
    result = subprocess.run([sys.executable, "-c", CRASHER, str(root)], cwd=Path(__file__).parents[2])
    assert result.returncode == 9
    assert (root / "bkt" / "k").read_bytes() == b"old"
    reopened = MirrorStore(root)
    assert (root / "bkt" / "k").read_bytes() == b"new"
    assert [v.path.read_bytes() for v in reopened.versions("bkt", "k")] == [b"old"]
    assert not list((root / ".tmp").iterdir())


def test_threads_writing_at_once_leave_a_consistent_store(tmp_path):
    store = MirrorStore(tmp_path / "m")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                put(store, f"shared/{i % 3}", f"{n}-{i}".encode(), T0 + timedelta(seconds=n * 100 + i))
                put(store, f"own/{n}/{i}", b"x", T0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(1 for _ in store.keys("bkt")) == 3 + 6 * 15
    for key in ("shared/0", "shared/1", "shared/2"):
        entry = store.entry("bkt", key)
        assert hashlib.md5(entry.path.read_bytes()).hexdigest() == entry.etag
        for version in store.versions("bkt", key):
            assert hashlib.md5(version.path.read_bytes()).hexdigest() == version.etag


def test_prune_versions_drops_only_versions_superseded_before_the_cutoff(tmp_path):
    store = MirrorStore(tmp_path / "m")
    put(store, "k", b"1", T0)
    put(store, "k", b"2", T0 + timedelta(days=10), now=T0 + timedelta(days=10))
    put(store, "k", b"3", T0 + timedelta(days=20), now=T0 + timedelta(days=20))
    old, recent = store.versions("bkt", "k")
    assert store.prune_versions(T0 + timedelta(days=15)) == 1
    assert not old.path.exists() and recent.path.read_bytes() == b"2"
    assert [v.etag for v in store.versions("bkt", "k")] == [recent.etag]
    assert store.path_of("bkt", "k").read_bytes() == b"3"



def test_the_version_budget_drops_the_oldest_versions_first_and_moves_the_pitr_window(tmp_path):
    store = MirrorStore(tmp_path / "m")
    put(store, "a", b"a" * 100, T0)
    put(store, "b", b"b" * 100, T0)
    assert store.pitr_since() == (T0 + timedelta(seconds=1), False)  # never pruned: the whole history
    for day, key in ((1, "a"), (2, "b"), (3, "a")):  # three versions of 100 bytes each
        at = T0 + timedelta(days=day)
        put(store, key, bytes([day]) * 100, at, now=at)

    assert store.prune_versions(T0, budget_bytes=150) == 2  # the oldest two go; 100 bytes are kept
    assert [(v.key, v.superseded_at) for v in store.versions("bkt", "a") + store.versions("bkt", "b")] == [
        ("a", T0 + timedelta(days=3))]
    assert store.pitr_since() == (T0 + timedelta(days=2), True)
    assert bytes_at(store, T0 + timedelta(days=2, hours=1)) == {"a": b"\x01" * 100, "b": b"\x02" * 100}
    # Within the budget nothing more goes, and an older horizon never moves the window back.
    assert store.prune_versions(T0, budget_bytes=100) == 0
    assert store.prune_versions(T0 + timedelta(days=4), budget_bytes=None) == 1
    assert store.pitr_since() == (T0 + timedelta(days=3), True)
    assert store.path_of("bkt", "a").read_bytes() == b"\x03" * 100

WRITER = """
import hashlib, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from core.mirror_store import Entry, MirrorStore
store, n = MirrorStore(Path(sys.argv[1])), int(sys.argv[2])
for i in range(20):
    data = f"{n}-{i}".encode()
    temp = store.temp_file("bkt"); temp.write_bytes(data)
    at = datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=n * 100 + i)
    store.commit("bkt", f"shared/{i % 4}", temp, Entry(size=len(data), etag=hashlib.md5(data).hexdigest()), at)
    if i % 5 == 4:
        store.remove("bkt", f"shared/{i % 4}", at)
"""


def test_processes_writing_at_once_leave_a_consistent_store(tmp_path):
    root = tmp_path / "m"
    MirrorStore(root).close()
    workers = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(n)], cwd=Path(__file__).parents[2])
               for n in range(4)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0, 0]
    store = MirrorStore(root)
    for key in [f"shared/{i}" for i in range(4)]:
        entry = store.entry("bkt", key)
        assert entry is None or hashlib.md5(entry.path.read_bytes()).hexdigest() == entry.etag
        for version in store.versions("bkt", key):
            assert hashlib.md5(version.path.read_bytes()).hexdigest() == version.etag
    stats = store.stats()
    assert stats["objects"] + stats["versions"] > 4 and not list((root / ".tmp").iterdir())


def test_opening_the_index_while_copies_come_and_go_in_its_temp_folder_never_fails(tmp_path):
    root = tmp_path / "mirror"
    MirrorStore(root).close()
    tmp, stop = root / ".tmp", threading.Event()

    def copies_coming_and_going() -> None:  # what live downloads of other processes do
        n = 0
        while not stop.is_set():
            part = tmp / f"kb.{n % 50}.part"
            part.write_bytes(b"x")
            part.unlink()
            n += 1

    churn = threading.Thread(target=copies_coming_and_going)
    churn.start()
    try:
        for _ in range(300):
            MirrorStore(root).close()
    finally:
        stop.set()
        churn.join()


def test_chinese_and_other_utf8_names_are_stored_at_their_own_paths(tmp_path):
    store = MirrorStore(tmp_path / "m")
    for key in ("知识库/报告.pdf", "знания/файл.pdf", "emoji/😀 notes.txt", "100% done.pdf"):
        put(store, key, key.encode(), T0)
        assert (store.root / "bkt" / key).read_bytes() == key.encode()
        assert store.entry("bkt", key).path == store.root / "bkt" / key


@pytest.mark.parametrize("order", [("a", "a/b", "a/"), ("a/b", "a/", "a"), ("a/", "a", "a/b")])
def test_a_key_that_is_also_a_folder_keeps_its_file_beside_the_folder_as_name_file(tmp_path, order):
    store = MirrorStore(tmp_path / "m")
    for n, key in enumerate(order):
        put(store, key, f"{key} v1".encode(), T0 + timedelta(minutes=n))
    for n, key in enumerate(order):
        put(store, key, f"{key} v2".encode(), T0 + timedelta(hours=1, minutes=n))
    bucket = store.root / "bkt"
    assert (bucket / "a%~file").read_bytes() == b"a v2"
    assert (bucket / "a" / "b").read_bytes() == b"a/b v2" and (bucket / "a" / "%~empty").read_bytes() == b"a/ v2"
    assert {key: store.entry("bkt", key).path for key in order} == {
        "a": bucket / "a%~file", "a/b": bucket / "a" / "b", "a/": bucket / "a" / "%~empty"}
    assert bytes_at(store, T0 + timedelta(minutes=30)) == {key: f"{key} v1".encode() for key in order}
    assert bytes_at(store, T0 + timedelta(hours=2)) == {key: f"{key} v2".encode() for key in order}


def test_keys_and_their_folders_committed_in_one_batch_are_all_kept(tmp_path):
    store = MirrorStore(tmp_path / "m")
    items = []
    for key in ("p", "p/q", "p/q/r", "s/t", "s"):
        temp = write_temp(store, key.encode())
        items.append((key, temp, Entry(size=len(key), etag=hashlib.md5(key.encode()).hexdigest(), last_modified=T0)))
    assert store.commit_many("bkt", items, T0) == [True] * 5
    assert {key: store.entry("bkt", key).path.read_bytes() for key, _, _ in items} == {
        key: key.encode() for key, _, _ in items}
    assert sorted(str(p.relative_to(store.root / "bkt")) for p in (store.root / "bkt").rglob("*") if p.is_file()) \
        == ["p%~file", "p/q%~file", "p/q/r", "s%~file", "s/t"]


MOVE_CRASHER = """
import hashlib, os, sys
from datetime import datetime, timezone
from pathlib import Path
from core import mirror_store
store = mirror_store.MirrorStore(Path(sys.argv[1]))
mirror_store._replace = lambda src, dst: os._exit(9)  # dies before the first rename of the commit
data = b"child"
temp = store.temp_file("bkt"); temp.write_bytes(data)
at = datetime(2025, 1, 1, 13, tzinfo=timezone.utc)
store.commit("bkt", "a/b", temp, mirror_store.Entry(size=5, etag=hashlib.md5(data).hexdigest(), last_modified=at), at)
"""


@pytest.mark.fault('process killed while a file makes way for a folder',
                   "nothing is lost: the next open moves the file 'a' to 'a%~file' and places 'a/b'")
def test_a_process_killed_while_a_file_makes_way_for_a_folder_loses_nothing(tmp_path):
    root = tmp_path / "m"
    store = MirrorStore(root)
    put(store, "a", b"parent", T0)
    store.close()
    result = subprocess.run([sys.executable, "-c", MOVE_CRASHER, str(root)], cwd=Path(__file__).parents[2])
    assert result.returncode == 9
    assert (root / "bkt" / "a").read_bytes() == b"parent", "the file stays where it was until the rename"
    reopened = MirrorStore(root)
    assert (root / "bkt" / "a%~file").read_bytes() == b"parent" and (root / "bkt" / "a" / "b").read_bytes() == b"child"
    assert {key: reopened.entry("bkt", key).path.read_bytes() for key in ("a", "a/b")} == {"a": b"parent",
                                                                                           "a/b": b"child"}


def test_no_bucket_or_key_can_take_the_mirrors_own_names(tmp_path):
    store = MirrorStore(tmp_path / "m")
    for bucket in (".versions", ".tmp", ".index.sqlite", ".convert", ".orphans", "..", "."):
        temp = store.temp_file(bucket)
        temp.write_bytes(b"x")
        store.commit(bucket, ".index.sqlite", temp, Entry(size=1, etag=hashlib.md5(b"x").hexdigest()), T0)
        assert store.entry(bucket, ".index.sqlite").path.parent.name.startswith("%2E")
    assert sorted(p.name for p in store.root.iterdir() if not p.name.startswith("%2E")) == [
        ".index.sqlite", ".index.sqlite-shm", ".index.sqlite-wal", ".tmp"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab/.%~", max_size=6), min_size=1, max_size=12, unique=True))
def test_keys_committed_in_any_order_each_keep_their_own_file_inside_the_bucket_folder(keys):
    with tempfile.TemporaryDirectory() as folder:
        store = MirrorStore(Path(folder) / "m")
        for n, key in enumerate(keys):
            put(store, key, f"{n}".encode(), T0 + timedelta(seconds=n))
        paths = {key: store.entry("bkt", key).path for key in keys}
        assert len(set(paths.values())) == len(keys), "two keys share a file"
        bucket = (store.root / "bkt").resolve()
        for n, key in enumerate(keys):
            assert paths[key].read_bytes() == f"{n}".encode()
            assert bucket in paths[key].resolve().parents
            check_safe(paths[key].relative_to(bucket))
        assert sorted(p for p in bucket.rglob("*") if p.is_file()) == sorted(paths.values()), "no stray files"
        for key in keys[::2]:
            store.remove("bkt", key, T0 + timedelta(hours=1))
        for key in keys[::2]:  # back again, now that other keys may need their names as folders
            put(store, key, b"again", T0 + timedelta(hours=2))
        assert {key: store.entry("bkt", key).path.read_bytes() for key in keys} == {
            key: b"again" if n % 2 == 0 else f"{n}".encode() for n, key in enumerate(keys)}
        assert len({store.entry("bkt", key).path for key in keys}) == len(keys)
        store.close()


def test_a_symlink_planted_where_a_folder_goes_is_replaced_by_a_real_folder(tmp_path):
    store = MirrorStore(tmp_path / "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    put(store, "seed", b"s", T0)
    (store.root / "bkt" / "docs").symlink_to(outside)
    put(store, "docs/report.pdf", b"report", T0)
    assert not (store.root / "bkt" / "docs").is_symlink() and not list(outside.iterdir())
    assert (store.root / "bkt" / "docs" / "report.pdf").read_bytes() == b"report"


def test_a_commit_whose_marks_are_cleared_without_a_wal_fsync_leaves_every_later_transaction_durable(tmp_path):
    # Step 2 of a commit runs at synchronous=NORMAL (its loss is rolled forward on opening); the
    # connection must be back at FULL afterwards, even when step 2 failed.
    store = MirrorStore(tmp_path / "m")
    assert put(store, "a", b"one", T0)
    full = 2
    assert sqlite_synchronous(store) == full
    temp = write_temp(store, b"two")
    entry = Entry(size=3, etag=hashlib.md5(b"two").hexdigest(), last_modified=T0 + timedelta(minutes=1))
    failing = mirror_store.fsync_files
    try:
        def refuse(paths):  # the renamed file's folder only: step 2
            paths = [Path(path) for path in paths]
            if store.root / "bkt" in paths:
                raise OSError("the disk went away")
            failing(paths)
        mirror_store.fsync_files = refuse
        with pytest.raises(OSError):
            store.commit_many("bkt", [("a", temp, entry)], T0 + timedelta(minutes=1))
    finally:
        mirror_store.fsync_files = failing
    assert sqlite_synchronous(store) == full
    assert store.entry("bkt", "a").path.read_bytes() == b"two"  # the next access finished the job


def sqlite_synchronous(store: MirrorStore) -> int:
    """The index connection's current `synchronous` level of this thread (2 = FULL)."""
    return store._conn().execute("PRAGMA synchronous").fetchone()[0]
