"""A bucket's listing (ListObjectsV2) for the reconcile, parsed at a seventh of minio-py's CPU.

minio-py parses each listed object with an ElementTree `find` per field (namespace lookups) and a
`strptime` of its LastModified: on a no-change reconcile, where nothing is copied, that was most of the
agent's CPU (docs/benchmarks.md, figure 2). Here each page is parsed in one pass over its elements, with
`datetime.fromisoformat`. The request itself (signing, region, retries of the connection pool, errors as
S3Error) is still minio-py's, through its request method `Minio._execute`; should a minio release drop
it, listing falls back to `Minio.list_objects` (tests/actors/minio/test_listing.py runs both).

The listing is untrusted input: a page must parse, keys are URL-decoded when the page says they are encoded,
and a page that says it is truncated must give a continuation token.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus

from minio import Minio

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CONTENTS, KEY, ETAG, SIZE, MODIFIED = (f"{NS}{name}" for name in ("Contents", "Key", "ETag", "Size", "LastModified"))
TRUNCATED, TOKEN, ENCODING = f"{NS}IsTruncated", f"{NS}NextContinuationToken", f"{NS}EncodingType"
PAGE = 1000  # keys per request (S3's maximum)


@dataclass(slots=True)
class Listed:
    """What the reconcile reads of a listed object (the names minio-py's Object uses)."""

    object_name: str
    etag: str
    size: int
    last_modified: datetime | None


class ListingError(Exception):
    """A listing page that cannot be read: the listing is incomplete, so nothing may be removed."""


def list_objects(client: Minio, bucket: str, prefix: str | None = None, page: int = PAGE) -> Iterator[Listed]:
    """Every object of `bucket` under `prefix`, in the server's (key) order."""
    execute = getattr(client, "_execute", None)
    if execute is None:  # a minio release without it: its own (slower) listing
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            yield Listed(obj.object_name, obj.etag or "", obj.size or 0, obj.last_modified)
        return
    token: str | None = None
    while True:
        query = {"list-type": "2", "delimiter": "", "encoding-type": "url", "max-keys": str(page),
                 "prefix": prefix or ""}
        if token:
            query["continuation-token"] = token
        response = execute("GET", bucket, query_params=query)
        objects, token = parse_page(response.data, bucket)
        yield from objects
        if token is None:
            return


def parse_page(data: bytes, bucket: str) -> tuple[list[Listed], str | None]:
    """The objects of one ListObjectsV2 page and the token of the next (None: this was the last)."""
    try:
        root = ET.fromstring(data)
        encoded = root.findtext(ENCODING) == "url"  # as minio-py: decode only what the server says it encoded
        objects = [_listed(element, encoded) for element in root.iter(CONTENTS)]
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise ListingError(f"a listing page of bucket {bucket} could not be read ({exc})") from None
    if (root.findtext(TRUNCATED) or "").strip().lower() != "true":
        return objects, None
    token = root.findtext(TOKEN)
    if not token:
        raise ListingError(f"a listing page of bucket {bucket} is truncated but gives no continuation token")
    return objects, token


def _listed(element: ET.Element, encoded: bool) -> Listed:
    key = etag = modified = None
    size = 0
    for field in element:
        tag = field.tag
        if tag == KEY:
            key = unquote_plus(field.text or "") if encoded else field.text
        elif tag == ETAG:
            etag = (field.text or "").replace('"', "")
        elif tag == SIZE:
            size = int(field.text or "0")
        elif tag == MODIFIED and field.text:
            modified = datetime.fromisoformat(field.text)
    if not key:
        raise ValueError("an object without a key")
    return Listed(key, etag or "", size, modified)


__all__ = ["ListingError", "Listed", "list_objects", "parse_page"]
