"""The mirror's GET signer (actors/minio/sigv4.py) signs exactly as minio-py's `sign_v4_s3` does, and MinIO
accepts its requests itself (not through the GET's fallback to minio-py)."""
from __future__ import annotations

import io
from datetime import datetime, timezone
from urllib.parse import SplitResult

from minio.credentials import Credentials
from minio.helpers import quote, sha256_hash
from minio.signer import sign_v4_s3

from actors.minio.sigv4 import Signer
from core import clients
from testbed import settings as testbed_settings

PAYLOAD = sha256_hash(b"")


def minio_py_headers(path: str, headers: dict[str, str], region: str, when: datetime) -> dict[str, str]:
    signed = {**headers, "x-amz-content-sha256": PAYLOAD, "x-amz-date": when.strftime("%Y%m%dT%H%M%SZ")}
    return sign_v4_s3(method="GET", url=SplitResult("http", "h:9000", path, "", ""), region=region, headers=signed,
                      credentials=Credentials("AKID", "se cret/+"), content_sha256=PAYLOAD, date=when)


def test_the_headers_are_minio_py_s_for_any_key_condition_region_and_day():
    signer = Signer("AKID", "se cret/+")
    cases = [("/b/plain.txt", {}, "us-east-1", datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc)),
             (f"/b/{quote('kb/ümlaut & space.txt')}", {"If-Match": '"0123"'}, "us-east-1",
              datetime(2026, 12, 1, 0, 0, 0, tzinfo=timezone.utc)),
             (f"/b/{quote('a+b=c?d#e%41~f.bin')}", {"If-None-Match": '"a  b"'}, "eu-west-2",
              datetime(2026, 12, 1, 0, 0, 1, tzinfo=timezone.utc))]
    for path, conditions, region, when in cases:
        headers = {"Host": "h:9000", "User-Agent": "ragflow-backup (mirror)", **conditions}
        ours = signer.sign("GET", path, headers, region, PAYLOAD, now=when.timestamp())
        assert ours == minio_py_headers(path, headers, region, when)


def test_minio_answers_the_signed_get_itself(testbed_env, minio_client, bucket):
    settings = testbed_settings.minio(testbed_env)
    minio_client.put_object(bucket, "kb/ümlaut & space.txt", io.BytesIO(b"bytes"), 5)
    signer = Signer(settings.access_key, clients.secret(settings.secret_key))
    path = f"/{bucket}/{quote('kb/ümlaut & space.txt')}"
    headers = signer.sign("GET", path, {"Host": settings.endpoint}, "us-east-1", PAYLOAD)
    pool = clients.minio_http(settings).connection_from_url(f"http://{settings.endpoint}")
    response = pool.urlopen("GET", path, headers=headers, redirect=False)
    assert (response.status, response.data) == (200, b"bytes")
