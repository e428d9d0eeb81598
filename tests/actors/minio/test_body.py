"""The mirror's body loop (actors/minio/body.py) against the test bed's real MinIO: the stored bytes, whole
and checked, whatever their encoding or size."""
from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest

from actors.minio.body import WRITE_BACK
from actors.minio.mirror import mirror_object, reconcile
from actors.minio.upkeep import verify_sample
from core.mirror_store import MirrorStore


def mirrored_bytes(store: MirrorStore, bucket: str, key: str) -> bytes:
    return store.entry(bucket, key).path.read_bytes()


def test_an_object_stored_gzip_encoded_is_mirrored_as_stored_by_an_event_and_by_a_reconcile(
        settings, store, minio_client, bucket):
    stored = gzip.compress(os.urandom(200_000))
    for key in ("event.json.gz", "listed.json.gz"):
        minio_client.put_object(bucket, key, io.BytesIO(stored), len(stored), content_type="application/json",
                                metadata={"Content-Encoding": "gzip"})
    assert minio_client.stat_object(bucket, "event.json.gz").metadata["Content-Encoding"] == "gzip"

    assert mirror_object(settings, bucket, "event.json.gz", store) == "copied"  # If-None-Match, the event's GET
    report = reconcile(settings, [bucket])  # If-Match the listed ETag, the reconcile's GET
    assert report.complete and report.errors == []

    for key in ("event.json.gz", "listed.json.gz"):
        assert mirrored_bytes(store, bucket, key) == stored  # not decompressed on the way
        assert store.entry(bucket, key).md5 == hashlib.md5(stored).hexdigest()
    assert verify_sample(settings, store=store) == []


@pytest.mark.parametrize("size", [WRITE_BACK, 2 * WRITE_BACK + 1, 3 * WRITE_BACK - 1])
def test_an_object_of_several_write_back_windows_is_mirrored_whole_and_checked_by_an_event_and_by_a_reconcile(
        settings, store, minio_client, bucket, size):
    data = os.urandom(size)
    for key in ("event.bin", "listed.bin"):
        minio_client.put_object(bucket, key, io.BytesIO(data), size, part_size=64 * 1024 * 1024)
    assert minio_client.stat_object(bucket, "event.bin").etag == hashlib.md5(data).hexdigest()  # a plain ETag: checked

    assert mirror_object(settings, bucket, "event.bin", store) == "copied"  # fsynced on its own thread
    report = reconcile(settings, [bucket])  # fsynced with its batch (core/batch_sync.py)
    assert report.complete and report.errors == []

    for key in ("event.bin", "listed.bin"):
        assert mirrored_bytes(store, bucket, key) == data
        assert store.entry(bucket, key).md5 == hashlib.md5(data).hexdigest()
