"""The MinIO mirror against the test bed's real MinIO: copies, versions, reconcile, outages, hostile keys."""
from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from minio.error import S3Error

from actors.minio.mirror import mirror_object, mirror_objects, reconcile
from actors.minio.upkeep import prune_versions, verify_sample
from core import mirror_store
from core.mirror_paths import decode_key
from core.mirror_status import mirror_mode
from core.mirror_store import MirrorStore
from tests.conftest import remove_bucket, unique


def put(client, bucket: str, key: str, data: bytes, **kwargs) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data), **kwargs)


def tick() -> datetime:
    """A moment strictly between two steps (MinIO's Last-Modified has whole seconds)."""
    time.sleep(1.1)
    moment = datetime.now(timezone.utc)
    time.sleep(1.1)
    return moment


def contents(store: MirrorStore, bucket: str, when: datetime | None = None) -> dict[str, bytes]:
    state = store.state_at(bucket, when or datetime.now(timezone.utc) + timedelta(seconds=5))
    return {key: ref.path.read_bytes() for key, ref in state.items()}


def source(client, bucket: str) -> dict[str, bytes]:
    found = {}
    for obj in client.list_objects(bucket, recursive=True):
        response = client.get_object(bucket, obj.object_name)
        found[obj.object_name] = response.read()
        response.close()
        response.release_conn()
    return found


def snapshot(store: MirrorStore) -> tuple[dict[str, bytes], list, list]:
    files = {str(p.relative_to(store.root)): p.read_bytes() for p in sorted(store.root.rglob("*"))
             if p.is_file() and not p.name.startswith(".index.sqlite")}
    with sqlite3.connect(store.index) as conn:
        return files, conn.execute("SELECT * FROM objects ORDER BY bucket, key").fetchall(), \
            conn.execute("SELECT * FROM versions ORDER BY id").fetchall()


def test_an_object_is_copied_with_its_metadata_and_superseded_bytes_stay_restorable(
        settings, store, minio_client, bucket):
    put(minio_client, bucket, "kb/doc.pdf", b"first", content_type="application/pdf",
        metadata={"X-Amz-Meta-Owner": "ann"})
    assert mirror_object(settings, bucket, "kb/doc.pdf", store) == "copied"
    assert mirror_object(settings, bucket, "kb/doc.pdf", store) == "unchanged"
    entry = store.entry(bucket, "kb/doc.pdf")
    assert entry.path.read_bytes() == b"first" and entry.path == store.root / bucket / "kb" / "doc.pdf"
    assert (entry.content_type, entry.metadata) == ("application/pdf", {"owner": "ann"})
    after_first = tick()

    put(minio_client, bucket, "kb/doc.pdf", b"second version", content_type="application/pdf")
    assert mirror_object(settings, bucket, "kb/doc.pdf", store) == "copied"
    assert [(v.reason, v.path.read_bytes(), v.metadata) for v in store.versions(bucket, "kb/doc.pdf")] == \
        [("overwritten", b"first", {"owner": "ann"})]
    after_second = tick()

    minio_client.remove_object(bucket, "kb/doc.pdf")
    assert mirror_object(settings, bucket, "kb/doc.pdf", store) == "removed"
    assert mirror_object(settings, bucket, "kb/doc.pdf", store) == "absent"
    assert not entry.path.exists() and store.entry(bucket, "kb/doc.pdf") is None
    assert [v.reason for v in store.versions(bucket, "kb/doc.pdf")] == ["overwritten", "deleted"]

    before_first = after_first - timedelta(minutes=5)
    assert contents(store, bucket, before_first) == {}
    assert contents(store, bucket, after_first) == {"kb/doc.pdf": b"first"}
    assert contents(store, bucket, after_second) == {"kb/doc.pdf": b"second version"}
    assert contents(store, bucket) == {}
    assert store.state_at(bucket, after_first)["kb/doc.pdf"].content_type == "application/pdf"


def test_duplicate_late_and_reordered_calls_are_harmless(settings, store, minio_client, bucket):
    put(minio_client, bucket, "k", b"v1")
    assert mirror_object(settings, bucket, "k", store) == "copied"
    minio_client.remove_object(bucket, "k")
    put(minio_client, bucket, "k", b"v2")  # re-created before the deletion's task ran
    assert mirror_object(settings, bucket, "k", store) == "copied"  # the late "deleted" task sees v2
    assert mirror_object(settings, bucket, "k", store) == "unchanged"  # the "created" task, duplicated
    assert mirror_object(settings, bucket, "k", store) == "unchanged"
    assert contents(store, bucket) == {"k": b"v2"}
    assert [v.path.read_bytes() for v in store.versions(bucket, "k")] == [b"v1"]
    assert mirror_object(settings, bucket, "never-existed", store) == "absent"
    assert mirror_object(settings, unique("no-such-bucket-"), "x", store) == "absent"


def test_keys_handed_over_together_are_each_brought_in_line_and_committed_at_once(settings, store, minio_client,
                                                                                 bucket):
    put(minio_client, bucket, "kept", b"same")
    assert mirror_object(settings, bucket, "kept", store) == "copied"
    put(minio_client, bucket, "new-1", b"one")
    put(minio_client, bucket, "new-2", b"two")
    put(minio_client, bucket, "changed", b"old")
    assert mirror_object(settings, bucket, "changed", store) == "copied"
    put(minio_client, bucket, "changed", b"newer")
    minio_client.remove_object(bucket, "kept")
    put(minio_client, bucket, "kept", b"same")  # re-created, same bytes: nothing to do

    outcomes = mirror_objects(settings, bucket, ["new-1", "changed", "kept", "new-2", "new-1", "never-existed"], store)

    assert outcomes == {"new-1": "copied", "changed": "copied", "kept": "unchanged", "new-2": "copied",
                        "never-existed": "absent"}
    assert contents(store, bucket) == {"kept": b"same", "new-1": b"one", "new-2": b"two", "changed": b"newer"}
    assert [v.path.read_bytes() for v in store.versions(bucket, "changed")] == [b"old"]


def test_one_key_failing_in_a_batch_still_mirrors_the_others_and_fails_the_batch_for_a_retry(
        settings, store, minio_client, bucket):
    put(minio_client, bucket, "good", b"fine")
    with pytest.raises(ValueError):  # a key the client refuses to ask for: a failure, not "gone"
        mirror_objects(settings, bucket, ["kb/../escape", "good"], store)
    assert contents(store, bucket) == {"good": b"fine"}


def test_a_mirror_index_row_no_mirror_wrote_is_reported_by_the_sample_check_naming_the_key(
        settings, store, minio_client, bucket):
    put(minio_client, bucket, "docs/one", b"one")
    assert mirror_object(settings, bucket, "docs/one", store) == "copied"
    with sqlite3.connect(store.index) as conn:
        conn.execute("UPDATE objects SET metadata='{' WHERE key='docs/one'")
    [problem] = verify_sample(settings, store=store)
    assert problem.startswith(f"s3://{bucket}/docs/one: the mirror index's row for 'docs/one' cannot be read")
    with pytest.raises(mirror_store.DamagedIndex, match="docs/one"):  # named, like any failure the workers retry
        mirror_object(settings, bucket, "docs/one", store)


def test_reconcile_heals_every_missed_event_and_a_second_run_changes_nothing(settings, store, minio_client, bucket):
    for name in ("keep", "change", "drop"):
        put(minio_client, bucket, f"docs/{name}", name.encode())
    assert reconcile(settings, [bucket], store).copied == 3
    put(minio_client, bucket, "docs/change", b"changed")  # three changes without any mirror_object call
    minio_client.remove_object(bucket, "docs/drop")
    put(minio_client, bucket, "new/file.txt", b"new")

    report = reconcile(settings, [bucket], store)
    assert (report.copied, report.removed, report.unchanged, report.listed, report.complete, report.errors) == \
        (2, 1, 1, 3, True, [])
    assert contents(store, bucket) == source(minio_client, bucket)
    assert {v.reason for key in ("docs/change", "docs/drop") for v in store.versions(bucket, key)} == \
        {"overwritten", "deleted"}
    again = reconcile(settings, [bucket], store)
    assert (again.copied, again.removed, again.unchanged, again.complete) == (0, 0, 3, True)
    assert verify_sample(settings, store=store) == []
    store.entry(bucket, "docs/keep").path.unlink()  # a mirror file lost by hand is fetched again
    assert verify_sample(settings, store=store) != []
    assert reconcile(settings, [bucket], store).copied == 1
    assert contents(store, bucket) == source(minio_client, bucket)


def early_in_a_second() -> datetime:
    """Now, at most 0.3 s into a second: what is written next lands in the same second."""
    while datetime.now(timezone.utc).microsecond > 300_000:
        time.sleep(0.05)
    moment = datetime.now(timezone.utc)
    time.sleep(0.01)  # MinIO's listing has milliseconds: what follows is written after the moment there too
    return moment


def test_an_object_written_in_the_same_second_just_after_a_moment_is_not_in_the_state_at_that_moment(
        settings, store, minio_client, bucket):
    put(minio_client, bucket, "before.txt", b"before")
    tick()
    moment = early_in_a_second()
    put(minio_client, bucket, "after.txt", b"after")  # its GET says the moment's second: the listing says more
    assert reconcile(settings, [bucket], store).copied == 2
    assert sorted(store.state_at(bucket, moment)) == ["before.txt"]
    assert sorted(store.state_at(bucket, datetime.now(timezone.utc))) == ["after.txt", "before.txt"]


def test_an_object_mirrored_on_its_event_gets_its_finer_time_from_the_next_reconcile(
        settings, store, minio_client, bucket):
    moment = early_in_a_second()
    put(minio_client, bucket, "after.txt", b"after")
    assert mirror_object(settings, bucket, "after.txt", store) == "copied"
    # To the second only, the object may have been there at the moment: it is kept rather than lost.
    assert store.entry(bucket, "after.txt").last_modified == moment.replace(microsecond=0)
    assert "after.txt" in store.state_at(bucket, moment)
    report = reconcile(settings, [bucket], store)
    assert (report.copied, report.unchanged) == (0, 1)
    listed = next(iter(minio_client.list_objects(bucket))).last_modified
    assert store.entry(bucket, "after.txt").last_modified == listed > moment
    assert store.state_at(bucket, moment) == {}


@pytest.mark.fault('a bucket deleted while it is being mirrored',
                   'each key is re-checked at the source; the mirrored objects move to versions (kept within minio.version_budget_percent and version_retention_days), nothing else is touched')
def test_a_bucket_deleted_at_the_source_leaves_the_mirror_but_keeps_its_versions(settings, store, minio_client):
    gone = unique("test-gone-")
    minio_client.make_bucket(gone)
    try:
        put(minio_client, gone, "a/b.txt", b"bytes")
        assert mirror_object(settings, gone, "a/b.txt", store) == "copied"
    finally:
        remove_bucket(minio_client, gone)
    report = reconcile(settings, store=store)  # every bucket of the server: `gone` is no longer listed
    assert not any(gone in error for error in report.errors)
    assert list(store.keys(gone)) == []
    assert [(v.reason, v.path.read_bytes()) for v in store.versions(gone, "a/b.txt")] == [("deleted", b"bytes")]


@pytest.mark.parametrize("failure", ["unreachable", "wrong secret key"])
@pytest.mark.fault('a source returning errors during reconcile',
                   'the listing failure is reported and nothing is removed from the mirror')
def test_a_failing_source_never_removes_anything_from_the_mirror(failure, settings, store, minio_client, bucket):
    for key in ("one", "two/three"):
        put(minio_client, bucket, key, key.encode())
    reconcile(settings, [bucket], store)
    before = snapshot(store)
    broken = settings.model_copy(deep=True)
    if failure == "unreachable":
        broken.minio.endpoint = "127.0.0.1:1"
    else:
        broken.minio.secret_key = "not-the-secret"  # type: ignore[assignment]
    minio_client.remove_object(bucket, "one")  # the source really lost a key: still nothing goes
    with pytest.raises(Exception) as raised:
        mirror_object(broken, bucket, "one", store)
    assert "not-the-secret" not in str(raised.value)
    for report in (reconcile(broken, store=store), reconcile(broken, [bucket], store)):
        assert not report.complete and report.errors
        assert report.removed == 0 and "not-the-secret" not in " ".join(report.errors)
    assert any("could not be reached" in p or "MinIO" in p for p in verify_sample(broken, store=store))
    assert snapshot(store) == before


@pytest.mark.fault('hostile object keys (../, absolute, NUL, 1,024 bytes, unicode, names differing only in case)',
                   "MinIO refuses '..', NUL and over-long keys; every accepted key is stored inside the mirror folder under a distinct path, versions too")
def test_hostile_keys_are_mirrored_inside_the_mirror_folder(settings, store, minio_client, bucket):
    accepted = [
        "/abs/path", "back\\slash", "знания/файл.pdf", "emoji/😀.txt", "Case.txt", "case.txt", "a", "a/b",
        "%2e%2e/x", "trail/", ".hidden", "..dots", "sp ace?#&=+.txt",
        "/".join(["é" * 127] * 4) + "/abcd",  # 1,024 bytes, each segment at MinIO's 255-byte limit
        "/".join(["😀"] * 204),  # 1,019 bytes whose encoded path would be too long: stored hashed
    ]
    refused = ["../../etc/passwd", "a/../../b", "dir/./x", "dbl//slash", "nul\x00x", "x" * 1024]
    assert len(accepted[-2].encode()) == 1024
    try:
        for n, key in enumerate(accepted):
            put(minio_client, bucket, key, f"bytes of {n}".encode())
        for key in refused:
            with pytest.raises((ValueError, S3Error)):
                put(minio_client, bucket, key, b"evil")
        listed = source(minio_client, bucket)
        # MinIO drops the leading slash, and does not list "a/b" while an object "a" exists.
        assert "abs/path" in listed and "a/b" not in listed and len(listed) == len(accepted) - 1
        report = reconcile(settings, [bucket], store)
        assert report.complete and report.copied == len(listed), report.errors
        assert mirror_object(settings, bucket, "a/b", store) == "copied"  # as its event would
        expected = {**listed, "a/b": f"bytes of {accepted.index('a/b')}".encode()}
        assert contents(store, bucket) == expected
        assert reconcile(settings, [bucket], store).removed == 0, "an unlisted key that stats fine stays"

        for key in expected:  # overwrite each once: versions of hostile keys are as safe as their current files
            put(minio_client, bucket, key, b"v2 " + expected[key])
            assert mirror_object(settings, bucket, key, store) == "copied"
        root = store.root.resolve()
        files = [path for path in store.root.rglob("*") if path.is_file()]
        assert len(files) > 2 * len(expected)
        for path in files:
            assert root in path.resolve().parents, f"{path} escapes the mirror"
        assert contents(store, bucket) == {key: b"v2 " + data for key, data in expected.items()}
        for key in refused[:4]:  # a key MinIO refuses is an error, never a deletion
            with pytest.raises((ValueError, S3Error)):
                mirror_object(settings, bucket, key, store)
        assert len(contents(store, bucket)) == len(expected)
    finally:
        minio_client.remove_object(bucket, "a/b")  # unlisted, so the bucket fixture would not find it


def test_single_bucket_mode_mirrors_only_its_prefix(settings, store, minio_client, bucket):
    put(minio_client, bucket, "ragflow/kb1/doc.txt", b"in")
    put(minio_client, bucket, "ragflowish/doc.txt", b"out")
    put(minio_client, bucket, "other/doc.txt", b"out")
    settings.minio.bucket, settings.minio.prefix_path = bucket, "ragflow/"
    report = reconcile(settings, store=store)
    assert (report.copied, report.listed, report.complete) == (1, 1, True)
    assert store.buckets() == [bucket] and list(store.keys(bucket)) == ["ragflow/kb1/doc.txt"]
    assert mirror_object(settings, bucket, "other/doc.txt", store) == "skipped"
    assert mirror_object(settings, "another-bucket", "ragflow/x", store) == "skipped"


def test_prune_versions_removes_only_versions_older_than_the_retention(settings, store, minio_client, bucket):
    settings.minio.version_budget_percent = None  # retention alone
    for data in (b"1", b"2", b"3"):
        put(minio_client, bucket, "k", data)
        mirror_object(settings, bucket, "k", store)
    old, recent = store.versions(bucket, "k")
    with sqlite3.connect(store.index) as conn:  # age the first version past the 30-day retention
        conn.execute("UPDATE versions SET superseded_at='2000-01-01T00:00:00.000000Z' "
                     "WHERE id=(SELECT MIN(id) FROM versions)")
    assert prune_versions(settings, store=store) == 1
    assert not old.path.exists() and recent.path.read_bytes() == b"2"
    assert prune_versions(settings, store=store) == 0
    assert prune_versions(settings, now=datetime.now(timezone.utc) + timedelta(days=31), store=store) == 1
    assert store.entry(bucket, "k").path.read_bytes() == b"3"


def test_prune_versions_keeps_the_newest_versions_that_fit_in_the_budget_share_of_the_mirror(
        settings, store, minio_client, bucket):
    for data in (b"1" * 400, b"2" * 300, b"3" * 200, b"4" * 1000):
        put(minio_client, bucket, "k", data)
        mirror_object(settings, bucket, "k", store)
    assert settings.minio.version_budget_percent == 20  # the default: 200 bytes of 1,000 current ones
    assert prune_versions(settings, store=store) == 2
    assert [v.path.read_bytes() for v in store.versions(bucket, "k")] == [b"3" * 200]
    horizon, pruned = store.pitr_since()
    assert pruned and horizon <= store.versions(bucket, "k")[0].superseded_at  # restorable from there on


def test_a_first_mirror_and_a_large_backlog_run_in_catch_up_mode_and_small_changes_in_steady_mode(
        settings, store, minio_client, bucket):
    for i in range(3):
        put(minio_client, bucket, f"doc-{i}", b"x" * i)
    first = reconcile(settings, [bucket], store=store)
    assert first.complete and first.copied == 3 and first.catch_up  # a first mirror
    assert mirror_mode(settings)["mode"] == "steady"  # and back to steady once it is done

    put(minio_client, bucket, "doc-3", b"one more")
    small = reconcile(settings, [bucket], store=store)
    assert small.copied == 1 and not small.catch_up

    settings.minio.catch_up_backlog = 2
    for i in range(4, 7):  # as after an outage: more to copy than catch_up_backlog
        put(minio_client, bucket, f"doc-{i}", b"missed")
    backlog = reconcile(settings, [bucket], store=store)
    assert backlog.copied == 3 and backlog.catch_up
    assert mirror_mode(settings) == {"mode": "steady", "since": mirror_mode(settings)["since"],
                                     "cpu_percent": settings.minio.cpu_budget_percent}


def test_a_crash_between_versioning_and_renaming_loses_nothing_and_a_rerun_fixes_it(
        settings, store, minio_client, bucket, monkeypatch):
    put(minio_client, bucket, "k", b"old bytes")
    mirror_object(settings, bucket, "k", store)
    put(minio_client, bucket, "k", b"new bytes")
    real = os.replace
    fail = [True]

    def crash_once(src, dst):
        if fail.pop() if fail else False:
            raise OSError("injected crash before the rename")
        real(src, dst)

    monkeypatch.setattr(mirror_store, "_replace", crash_once)
    with pytest.raises(OSError, match="injected"):
        mirror_object(settings, bucket, "k", store)
    assert (store.root / bucket / "k").read_bytes() == b"old bytes"
    assert [v.path.read_bytes() for v in store.versions(bucket, "k")] == [b"old bytes"]
    assert mirror_object(settings, bucket, "k", store) == "unchanged"  # the store rolled the commit forward
    assert contents(store, bucket) == {"k": b"new bytes"}
    assert verify_sample(settings, store=store) == []


def test_verify_sample_tells_corruption_from_lag(settings, store, minio_client, bucket):
    for key in ("a", "b", "c"):
        put(minio_client, bucket, key, key.encode() * 4)
    reconcile(settings, [bucket], store)
    store.entry(bucket, "a").path.write_bytes(b"AAAA")  # bit rot: same size, other bytes
    minio_client.remove_object(bucket, "b")
    put(minio_client, bucket, "c", b"changed")
    assert not [p for p in verify_sample(settings, store=store) if f"{bucket}/c " in p], "a fresh change is normal lag"
    settings.notify.mirror_lag_seconds = 1
    time.sleep(2)
    found = verify_sample(settings, store=store)
    problems = {key: " ".join(p for p in found if f"s3://{bucket}/{key} " in p) for key in ("a", "b", "c")}
    assert len(found) == 3 and all(problems.values()), found
    assert "MD5" in problems["a"] and "corruption" in problems["a"]
    assert "deleted at the source" in problems["b"] and "lag" in problems["b"]
    assert "changed at the source" in problems["c"] and "lag, not corruption" in problems["c"]


def test_objects_of_many_megabytes_and_multipart_etags_are_checked_and_copied(settings, store, minio_client, bucket):
    data = os.urandom(12 * 1024 * 1024 + 5)
    minio_client.put_object(bucket, "big.bin", io.BytesIO(data), len(data), part_size=5 * 1024 * 1024)
    assert "-" in minio_client.stat_object(bucket, "big.bin").etag
    assert mirror_object(settings, bucket, "big.bin", store) == "copied"
    assert Path(store.entry(bucket, "big.bin").path).read_bytes() == data
    assert verify_sample(settings, store=store) == []


READABLE = ["知识库/报告.pdf", "知识库/说明 (1).docx", "znania/знания.txt", "emoji/😀 notes.txt", "100% done.pdf",
            "kb-1/sp ace?#&=+.txt", "back\\slash", ".hidden/x", "..dots"]
ESCAPED = {"%2E%2E/x": "%252E%252E/x", "trail/": "trail/%~empty", "a": "a%~file"}  # key -> its path in the bucket


def test_utf8_names_are_mirrored_at_their_own_paths_and_mc_mirror_of_the_folder_gives_the_keys_back(
        settings, store, minio_client, bucket, testbed_env):
    keys = [*READABLE, *ESCAPED, "a/b"]
    for n, key in enumerate(keys):
        put(minio_client, bucket, key, f"bytes of {n}".encode())
        assert mirror_object(settings, bucket, key, store) == "copied"
    folder = store.root / bucket
    for n, key in enumerate(keys):
        relative = ESCAPED.get(key, key)
        assert (folder / relative).read_bytes() == f"bytes of {n}".encode() and store.entry(bucket, key).path == folder / relative
        assert decode_key(relative) == key

    copy = unique("test-mc-")
    minio_client.make_bucket(copy)
    try:
        alias = {**os.environ, "MC_HOST_tb": f"http://{testbed_env['MINIO_ACCESS_KEY']}:"
                                             f"{testbed_env['MINIO_SECRET_KEY']}@{testbed_env['MINIO_ENDPOINT']}"}
        subprocess.run([testbed_env["MC"], "mirror", "--quiet", str(folder), f"tb/{copy}"], env=alias, check=True,
                       capture_output=True)
        back = {}
        for key in [*READABLE, "a/b", *ESCAPED.values()]:
            response = minio_client.get_object(copy, key)
            back[key] = response.read()
            response.close()
            response.release_conn()
        assert {key: back[key] for key in READABLE} == {key: f"bytes of {keys.index(key)}".encode() for key in READABLE}
        assert back["a/b"] == f"bytes of {keys.index('a/b')}".encode()
        assert {path: back[path] for path in ESCAPED.values()} == {
            path: f"bytes of {keys.index(key)}".encode() for key, path in ESCAPED.items()}, "escaped keys come back escaped"
    finally:
        minio_client.remove_object(copy, "a/b")
        remove_bucket(minio_client, copy)
        minio_client.remove_object(bucket, "a/b")  # unlisted while "a" exists: the bucket fixture would miss it
