"""What the mirror reads of a GET's response headers (they describe the served bytes as a stat would),
read cheaply: for small objects this was a quarter of a copying thread's interpreter time (py-spy,
docs/benchmarks.md "Issue 16: the per-object path"), in minio-py's `from_http_header` (a `strptime` per
object) and in iterating every header line to find the user metadata.

Headers come from the source: untrusted. A Last-Modified not in the usual fixed form goes to minio-py's
parser, which accepts or refuses it as before.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from minio.time import from_http_header

META_PREFIX = "x-amz-meta-"
# The content headers MinIO keeps with an object and serves back, which a restore can send again
# (minio-py's put_object sends these names as themselves: actors/minio/put_headers.py).
CONTENT_HEADERS = ("cache-control", "content-disposition", "content-encoding", "content-language")
MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def http_date(value: str) -> datetime:
    """An HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110's IMF-fixdate) as an aware UTC datetime;
    ValueError if it is not one."""
    if len(value) == 29 and value[3:5] == ", " and value[25:] == " GMT" and value[19] == value[22] == ":" \
            and value[7] == value[11] == value[16] == " " and value[5:7].isdigit() and value[12:16].isdigit() \
            and value[17:19].isdigit() and value[20:22].isdigit() and value[23:25].isdigit() and value[8:11] in MONTHS:
        try:
            when = datetime(int(value[12:16]), MONTHS[value[8:11]], int(value[5:7]), int(value[17:19]),
                            int(value[20:22]), int(value[23:25]), tzinfo=timezone.utc)
        except ValueError:
            when = None
        if when is not None and WEEKDAYS[when.weekday()] == value[:3]:
            return when
    return from_http_header(value)  # anything else: minio-py's own verdict (it raises ValueError)


def user_metadata(headers: Any) -> dict[str, str]:
    """The object's user metadata (x-amz-meta-*), names lower-cased without the prefix; of a header sent
    twice, the last line."""
    found = {}
    for name in headers:  # each name once (urllib3's HTTPHeaderDict): the values are read only for metadata
        if name[:11].lower() == META_PREFIX:
            values = headers.getlist(name) if hasattr(headers, "getlist") else [headers[name]]
            found[name[11:].lower()] = values[-1]
    return found


def content_headers(headers: Any) -> dict[str, str]:
    """The object's CONTENT_HEADERS among a GET's response headers, names in lower case."""
    found = {}
    for name in CONTENT_HEADERS:
        value = headers.get(name)
        if value is not None:
            found[name] = value
    return found


__all__ = ["CONTENT_HEADERS", "META_PREFIX", "content_headers", "http_date", "user_metadata"]
