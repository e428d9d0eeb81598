"""AWS Signature V4 of the mirror's GETs (actors/minio/object_get.py), signed as minio-py's `sign_v4_s3`
signs them, with the signing key kept per day and region.

minio-py derives the signing key (four HMACs) and formats the date twice with `strftime` for every
request: with the canonical request around it, 7 % of a reconcile's interpreter time for small objects
(py-spy `--gil`, docs/benchmarks.md "Issue 16: figure 1a, client and server CPU per object"). The key
only changes with the day (and region), and the request's date string with the second, so both are
kept. tests/actors/minio/test_sigv4.py checks the headers against `sign_v4_s3` byte for byte.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time

ALGORITHM = "AWS4-HMAC-SHA256"
SPACES = re.compile(" +")  # as minio-py: runs of spaces in a header value become one
UNSIGNED = ("authorization", "user-agent")  # as minio-py: never signed


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class Signer:
    """Signs body-less S3 requests of one access key. Thread-safe: the caches are replaced whole."""

    def __init__(self, access_key: str, secret_key: str, service: str = "s3"):
        self.access_key, self.service = access_key, service
        self._secret = f"AWS4{secret_key}".encode()
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._second: tuple[int, str, str] = (-1, "", "")  # (epoch second, amz date, day)

    def _dates(self, now: float) -> tuple[str, str]:
        second = int(now)
        cached = self._second
        if cached[0] != second:
            amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            cached = self._second = (second, amz, amz[:8])
        return cached[1], cached[2]

    def _key(self, day: str, region: str) -> bytes:
        key = self._keys.get((day, region))
        if key is None:
            key = _hmac(_hmac(_hmac(_hmac(self._secret, day), region), self.service), "aws4_request")
            with self._lock:
                if len(self._keys) > 64:  # days gone by
                    self._keys = {}
                self._keys[(day, region)] = key
        return key

    def sign(self, method: str, path: str, headers: dict[str, str], region: str, payload: str,
             now: float | None = None) -> dict[str, str]:
        """`headers` (Host among them) with x-amz-content-sha256 (`payload`), x-amz-date and Authorization
        added; `path` already URI-encoded, without a query."""
        amz, day = self._dates(time.time() if now is None else now)
        headers = {**headers, "x-amz-content-sha256": payload, "x-amz-date": amz}
        canonical = sorted((name.lower(), SPACES.sub(" ", value).strip()) for name, value in headers.items()
                           if name.lower() not in UNSIGNED)
        signed = ";".join(name for name, _ in canonical)
        request = "\n".join((method, path or "/", "", *(f"{name}:{value}" for name, value in canonical), "",
                             signed, payload))
        scope = f"{day}/{region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{amz}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(self._key(day, region), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"{ALGORITHM} Credential={self.access_key}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={signature}")
        return headers


__all__ = ["Signer"]
