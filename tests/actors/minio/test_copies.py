"""A reconcile's copies (actors/minio/copies.py): fetched on threads, committed in batches on a committer
thread, into a real mirror store in tmp_path. The fetch here writes the temp file itself (what a GET
would), so what is tested is the batching, the counting and the failures, not MinIO (test_mirror.py)."""
from __future__ import annotations

import contextlib
import hashlib
import os
from datetime import datetime, timezone

from actors.minio.copies import COMMIT_BATCH, Copies
from core.mirror_store import Entry, MirrorStore

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


class Tally:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def fail(self, message: str) -> None:
        self.failures.append(message)


def fetcher(store: MirrorStore, broken: str | None = None):
    def fetch(bucket: str, key: str, listed):
        if key == broken:
            raise RuntimeError("the source hung up")
        data = f"{bucket}/{key}".encode()
        temp = store.temp_file(bucket)
        temp.write_bytes(data)
        md5 = hashlib.md5(data).hexdigest()
        return "fetched", (temp, Entry(size=len(data), etag=md5, md5=md5, seen_at=NOW))
    return fetch


def committer(store: MirrorStore, refused_bucket: str | None = None):
    def commit(bucket: str, items):
        if bucket == refused_bucket:
            for _, temp, _ in items:
                temp.unlink()
            raise OSError("disk full")
        return store.commit_many(bucket, items, NOW, synced=True)
    return commit


def keys(count: int) -> list[str]:
    return [f"doc/{i:04d}.bin" for i in range(count)]


def test_every_key_of_several_buckets_is_committed_and_counted_once_across_batches(tmp_path):
    store, tally = MirrorStore(tmp_path / "mirror"), Tally()
    copies = Copies(fetcher(store), committer(store), tally, workers=4, metered=contextlib.nullcontext)
    count = COMMIT_BATCH * 2 + 7  # two full batches per bucket and a partial one
    for bucket in ("alpha", "beta"):
        for key in keys(count):
            copies.submit(bucket, key)
        copies.flush()
    copies.close()
    assert tally.counts == {"copied": 2 * count} and tally.failures == []
    for bucket in ("alpha", "beta"):
        assert sorted(store.keys(bucket)) == keys(count)
        assert store.path_of(bucket, "doc/0003.bin").read_bytes() == f"{bucket}/doc/0003.bin".encode()
    assert os.listdir(store.tmp) == []  # no temp file left behind


def test_a_refused_commit_fails_its_own_keys_and_the_other_buckets_are_still_mirrored(tmp_path):
    store, tally = MirrorStore(tmp_path / "mirror"), Tally()
    copies = Copies(fetcher(store), committer(store, refused_bucket="beta"), tally, workers=4,
                    metered=contextlib.nullcontext)
    for bucket in ("alpha", "beta"):
        for key in keys(10):
            copies.submit(bucket, key)
    copies.close()
    assert tally.counts == {"copied": 10}
    assert len(tally.failures) == 10 and all("s3://beta/" in f and "disk full" in f for f in tally.failures)
    assert sorted(store.keys("alpha")) == keys(10) and list(store.keys("beta")) == []


def test_a_failed_fetch_is_reported_for_that_key_only(tmp_path):
    store, tally = MirrorStore(tmp_path / "mirror"), Tally()
    copies = Copies(fetcher(store, broken="doc/0002.bin"), committer(store), tally, workers=1,
                    metered=contextlib.nullcontext)
    for key in keys(5):
        copies.submit("alpha", key)
    copies.close()
    assert tally.counts == {"copied": 4}
    assert tally.failures == ["s3://alpha/doc/0002.bin could not be mirrored: RuntimeError: the source hung up"]
    assert "doc/0002.bin" not in set(store.keys("alpha"))
