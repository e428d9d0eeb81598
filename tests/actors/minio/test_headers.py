"""What the mirror reads of a GET's headers (actors/minio/headers.py): dates and user metadata, as minio-py
reads them, from real MinIO responses and from hostile ones."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
from minio.time import from_http_header
from urllib3 import HTTPHeaderDict

from actors.minio.headers import http_date, user_metadata
from core.clients import minio_client
from testbed import settings as testbed_settings
from tests.conftest import remove_bucket, unique


def test_an_http_date_reads_as_minio_py_reads_it():
    for text in ("Sun, 06 Nov 1994 08:49:37 GMT", "Mon, 30 Nov 2026 05:59:59 GMT", "Thu, 29 Feb 2024 00:00:00 GMT"):
        assert http_date(text) == from_http_header(text)
    assert http_date("Mon, 30 Nov 2026 05:59:59 GMT") == datetime(2026, 11, 30, 5, 59, 59, tzinfo=timezone.utc)


@pytest.mark.parametrize("text", ["Tue, 06 Nov 1994 08:49:37 GMT",  # the wrong weekday
                                  "Fri, 30 Feb 2024 00:00:00 GMT",  # no such day
                                  "Sun, 06 Nov 1994 08:49:37 UTC", "Sunday, 06-Nov-94 08:49:37 GMT",
                                  "Sun, 06 Xyz 1994 08:49:37 GMT", ""])
def test_a_malformed_http_date_is_refused(text):
    with pytest.raises(ValueError):
        http_date(text)


def test_user_metadata_is_read_without_its_prefix_lower_cased_and_the_last_of_a_repeated_header_wins():
    headers = HTTPHeaderDict()
    for name, value in (("Content-Type", "text/plain"), ("X-Amz-Meta-Owner", "ann"), ("x-amz-meta-kb", "one"),
                        ("X-AMZ-META-KB", "two"), ("x-amz-meta", "not metadata"), ("ETag", '"abc"')):
        headers.add(name, value)
    assert user_metadata(headers) == {"owner": "ann", "kb": "two"}
    assert user_metadata({"X-Amz-Meta-Owner": "ann", "Content-Length": "3"}) == {"owner": "ann"}


def test_a_real_get_reads_the_same_metadata_and_date_as_a_stat(testbed_env):
    client, bucket = minio_client(testbed_settings.minio(testbed_env)), unique("headers-")
    client.make_bucket(bucket)
    try:
        client.put_object(bucket, "kb/ümlaut & space.txt", io.BytesIO(b"hello"), 5,
                          metadata={"X-Amz-Meta-Owner": "ann", "X-Amz-Meta-Kb-Id": "42"})
        stat = client.stat_object(bucket, "kb/ümlaut & space.txt")
        response = client.get_object(bucket, "kb/ümlaut & space.txt")
        try:
            assert user_metadata(response.headers) == {"owner": "ann", "kb-id": "42"}
            assert http_date(response.headers["last-modified"]) == stat.last_modified
        finally:
            response.close()
            response.release_conn()
    finally:
        remove_bucket(client, bucket)
