"""The headers a restore sends with an object, built from what the mirror index says of it: its content
type, its content headers (actors/minio/headers.py: CONTENT_HEADERS) and its user metadata.

The index is read back from the storage root: untrusted. minio-py sends a metadata name that is a standard
header (cache-control, content-encoding, ...) or starts with `x-amz-` as that header itself, so a tampered
index could otherwise have MinIO lock the restored objects (x-amz-object-lock-*), encrypt them with a key of
its own (x-amz-server-side-encryption-customer-*), tag them, or redirect them. Here each user metadata name
is sent under `x-amz-meta-`, whatever it looks like, a content header only if it is one of CONTENT_HEADERS,
and names and values are checked: what the mirror recorded from MinIO's own headers always passes, anything
else refuses the restore before the first write.
"""
from __future__ import annotations

import re
from typing import Any

from actors.minio.headers import CONTENT_HEADERS

# An HTTP field name (RFC 9110 "token"), lower case: user_metadata in actors/minio/headers.py stores names so.
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# What an HTTP field value may hold and minio-py will send: visible US-ASCII, spaces and tabs inside.
_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?|")
# MinIO refuses more than 2 KiB of user metadata (x-amz-meta-* names and values) with MetadataTooLarge;
# far past it is no longer a refusal to wait for but an index that was written by something else.
MAX_METADATA_BYTES = 8192
MAX_HEADER_VALUE = 1024  # content type and content headers: MinIO keeps whatever it was sent, only their form is ours to check


class UnsafeHeaders(ValueError):
    """What the index says of an object cannot be sent back to MinIO as it stands."""


def put_headers(content_type: Any, metadata: Any, content: Any = None) -> tuple[str, dict[str, str]]:
    """The content type, and the content and `x-amz-meta-*` headers, to restore an object with (`content`:
    its content headers, None for none); UnsafeHeaders naming the first thing that is wrong."""
    kind = content_type or "application/octet-stream"
    if not isinstance(kind, str) or len(kind) > MAX_HEADER_VALUE or not _VALUE.fullmatch(kind):
        raise UnsafeHeaders(f"content type {_shown(kind)} is not printable US-ASCII text")
    if not isinstance(metadata, dict):
        raise UnsafeHeaders(f"user metadata is a {type(metadata).__name__}, not names and values")
    headers, total = {}, 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UnsafeHeaders(f"user metadata name {_shown(name)} is not an HTTP field name in lower case")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise UnsafeHeaders(f"user metadata {name!r} has a value that is not printable US-ASCII text")
        total += len(name) + len(value)
        headers[f"x-amz-meta-{name}"] = value
    if total > MAX_METADATA_BYTES:
        raise UnsafeHeaders(f"user metadata of {total} bytes is more than MinIO stores ({MAX_METADATA_BYTES})")
    if not isinstance(content or {}, dict):
        raise UnsafeHeaders(f"content headers are a {type(content).__name__}, not names and values")
    for name, value in (content or {}).items():
        if name not in CONTENT_HEADERS:
            raise UnsafeHeaders(f"header {_shown(name)} is not one the mirror keeps ({', '.join(CONTENT_HEADERS)})")
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or not _VALUE.fullmatch(value):
            raise UnsafeHeaders(f"header {name!r} has a value that is not printable US-ASCII text")
        headers[name] = value
    return kind, headers


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["MAX_METADATA_BYTES", "UnsafeHeaders", "put_headers"]
