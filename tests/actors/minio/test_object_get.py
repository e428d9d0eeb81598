"""The mirror's lean GET (actors/minio/object_get.py, over libcurl) answers as minio-py's get_object does,
against the test bed's MinIO: the same bytes and headers, 304 as NotModified, errors as S3Error with their
codes; one connection kept per thread, bodies streamed in blocks."""
from __future__ import annotations

import io
import os

import pytest
from minio.error import S3Error

from actors.minio.curl_get import BUFFER, LARGE
from actors.minio.object_get import LARGE_OBJECT, NotModified, ObjectGets
from testbed import settings as testbed_settings

KEYS = ("plain.txt", "kb/ümlaut & space.txt", "a+b=c?d#e%41~f.bin", "dir/中文/报告 (1).pdf")


def read(response) -> bytes:
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


@pytest.fixture
def gets(testbed_env, minio_client):
    return ObjectGets(minio_client, testbed_settings.minio(testbed_env))


def test_a_get_reads_the_same_bytes_and_headers_as_minio_py_for_any_key(gets, minio_client, bucket):
    for number, key in enumerate(KEYS):
        data = f"object {number}".encode()
        minio_client.put_object(bucket, key, io.BytesIO(data), len(data), metadata={"X-Amz-Meta-Owner": "ann"})
        response = gets.get(bucket, key, {})
        assert response.headers["etag"] == minio_client.stat_object(bucket, key).etag.join('""')
        assert response.headers["x-amz-meta-owner"] == "ann"
        assert read(response) == data


def test_an_unchanged_object_is_not_modified_and_a_changed_one_fails_its_precondition(gets, minio_client, bucket):
    minio_client.put_object(bucket, "k", io.BytesIO(b"one"), 3)
    etag = minio_client.stat_object(bucket, "k").etag
    with pytest.raises(NotModified):
        gets.get(bucket, "k", {"If-None-Match": f'"{etag}"'})
    assert read(gets.get(bucket, "k", {"If-None-Match": '"0123"'})) == b"one"
    with pytest.raises(S3Error) as failed:
        gets.get(bucket, "k", {"If-Match": '"0123"'})
    assert failed.value.code == "PreconditionFailed"


def test_a_missing_key_or_bucket_is_reported_with_its_s3_code(gets, bucket):
    with pytest.raises(S3Error) as missing_key:
        gets.get(bucket, "no/such/key", {})
    assert missing_key.value.code == "NoSuchKey"
    with pytest.raises(S3Error) as missing_bucket:
        gets.get(f"{bucket}-gone", "key", {})
    assert missing_bucket.value.code == "NoSuchBucket"


def test_a_connection_is_reused_after_each_answer(gets, minio_client, bucket):
    minio_client.put_object(bucket, "k", io.BytesIO(b"one"), 3)
    etag = minio_client.stat_object(bucket, "k").etag
    for _ in range(3):
        read(gets.get(bucket, "k", {}))
        with pytest.raises(NotModified):
            gets.get(bucket, "k", {"If-None-Match": f'"{etag}"'})
    assert gets.curl.connects == 1


def test_a_body_larger_than_a_block_is_streamed_whole_in_large_blocks_only(gets, minio_client, bucket):
    data = os.urandom(3 * BUFFER + 5)
    minio_client.put_object(bucket, "big.bin", io.BytesIO(data), len(data))
    response = gets.get(bucket, "big.bin", {})
    blocks = list(response.stream(BUFFER))
    response.close()
    assert b"".join(blocks) == data and all(len(block) >= LARGE for block in blocks[:-1])


def test_a_response_left_midway_does_not_stop_the_next_get(gets, minio_client, bucket):
    data = os.urandom(3 * BUFFER)
    minio_client.put_object(bucket, "big.bin", io.BytesIO(data), len(data))
    response = gets.get(bucket, "big.bin", {})
    next(response.stream(BUFFER))
    response.close()
    assert read(gets.get(bucket, "big.bin", {})) == data


def test_an_object_known_to_be_large_is_fetched_through_urllib3_with_the_same_answers(gets, minio_client, bucket):
    data = os.urandom(LARGE_OBJECT)
    minio_client.put_object(bucket, "large.bin", io.BytesIO(data), len(data))
    large = gets.for_size(len(data))
    assert gets.for_size(len(data) - 1) is gets and gets.for_size(None) is gets and large.for_size(None) is large
    response = large.get(bucket, "large.bin", {})
    assert response.headers["etag"] == minio_client.stat_object(bucket, "large.bin").etag.join('""')
    assert read(response) == data
    with pytest.raises(NotModified):
        large.get(bucket, "large.bin", {"If-None-Match": response.headers["etag"]})
    assert large.pool.num_connections == 1 and gets.curl.connects == 0
