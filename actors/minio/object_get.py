"""The mirror's GET of one object, lean: signed as minio-py signs it, sent and read by libcurl, without
minio-py's general request path.

For small objects the GET was half of a copying thread's interpreter time: minio-py around the request
(argument checks, building and re-copying headers, the pool manager finding the pool by URL: py-spy,
docs/benchmarks.md "Issue 16: the per-object path, again"), then urllib3 and `http.client` (sending, the
status line, headers parsed by the `email` package: "Issue 16: figure 1a, client and server CPU per
object"). Here the request is signed by actors/minio/sigv4.py (minio-py's algorithm, the signing key kept
per day; the bucket's region from the client) and sent by actors/minio/curl_get.py (libcurl, one
connection per thread kept open, minio-py's connect and read timeouts and CA bundle from core/clients.py),
or, for an object known to be large (`for_size`), straight to the endpoint's urllib3 pool (built by
core/clients.py like minio-py's own).

Only the answers the mirror expects are read here: 200 (the bytes) and 304 (unchanged). Any other
(404, 412, an error), or a request refused or reset before any answer, is asked again through minio-py's
`get_object`, so it is retried and raised as before (S3Error with its code, ServerError, urllib3's errors):
one more request, only on that rare path. Keys with `.` or `..` segments,
an Amazon S3 endpoint (minio-py addresses it by virtual host, not by path as here), and a minio release
without the region lookup this uses always go through `get_object`.
"""
from __future__ import annotations

import copy
from typing import Any

from minio import Minio
from minio.error import ServerError
from minio.helpers import quote, sha256_hash

from actors.minio.curl_get import CurlGets
from actors.minio.sigv4 import Signer
from core import clients
from core.config import MinioSettings

USER_AGENT = "ragflow-backup (mirror)"


class NotModified(Exception):
    """The source still has the ETag the mirror holds (304 to If-None-Match)."""


LARGE_OBJECT = 512 << 10  # bytes from which a GET known to be this large goes through urllib3 (`for_size`)


class ObjectGets:
    def __init__(self, client: Minio, settings: MinioSettings):
        self.client = client
        self.host, self.scheme = settings.endpoint, "https" if settings.secure else "http"
        self.curl: CurlGets | None = CurlGets(f"{self.scheme}://{self.host}", clients.MINIO_CONNECT_SECONDS,
                                              settings.timeout_seconds, clients.ca_file() if settings.secure else None)
        self.pool = clients.minio_http(settings).connection_from_url(f"{self.scheme}://{self.host}")
        self.signer = Signer(settings.access_key, clients.secret(settings.secret_key) or "")
        self.payload = "UNSIGNED-PAYLOAD" if settings.secure else sha256_hash(b"")  # as minio-py: no body
        self.region = getattr(client, "_get_region", None)  # minio-py's cached GetBucketLocation
        if self.host.split(":")[0].lower().endswith(".amazonaws.com"):
            self.region = None
        self.large = copy.copy(self)
        self.large.curl, self.large.large = None, self.large

    def for_size(self, size: int | None) -> ObjectGets:
        """These GETs, for an object of `size` bytes (None: not known). libcurl saves about 0.23 ms of
        CPU per request, but hands each body's bytes to Python with one more copy than urllib3 (about
        0.4 ms more per MiB: docs/benchmarks.md, "Issue 16: figure 1a, client and server CPU per
        object"), so an object known to be LARGE_OBJECT or more is fetched through urllib3."""
        return self.large if size is not None and size >= LARGE_OBJECT else self

    def get(self, bucket: str, key: str, conditions: dict[str, str]) -> Any:
        """The response of a 200 (streamed: the caller closes and releases it); NotModified on a 304;
        anything else raised as minio-py's get_object raises it."""
        if self.region is None or "/./" in f"/{key}/" or "/../" in f"/{key}/":
            return self._minio_get(bucket, key, conditions)
        path = f"/{bucket}/{quote(key)}"
        signed = self.signer.sign("GET", path, {"Host": self.host, "User-Agent": USER_AGENT, **conditions},
                                  self.region(bucket), self.payload)
        if self.curl is None:
            response = self.pool.urlopen("GET", path, headers=signed, preload_content=False, redirect=False)
        else:
            response = self.curl.open(path, signed, f"s3://{bucket}/{key}")
            if response is None:  # refused or reset before an answer: minio-py's retries and errors
                return self._minio_get(bucket, key, conditions)
        if response.status == 200:
            return response
        response.read()  # a short error document: read, so the connection is kept
        response.close()
        response.release_conn()
        if response.status == 304:
            raise NotModified()
        return self._minio_get(bucket, key, conditions)

    def _minio_get(self, bucket: str, key: str, conditions: dict[str, str]) -> Any:
        try:
            return self.client.get_object(bucket, key, request_headers=conditions)
        except ServerError as exc:
            if exc.status_code == 304:
                raise NotModified() from None
            raise


__all__ = ["NotModified", "ObjectGets"]
