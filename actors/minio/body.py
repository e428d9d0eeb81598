"""The mirror's body loop: one object's bytes from a GET into a temp file, every byte MD5-checked.

Kept apart from actors/minio/mirror.py (which decides what to fetch and commits it) because figure 1b
(initial mirror of large objects, docs/benchmarks.md) is decided here: the socket reads, the hashing and
the page-cache writes of every mirrored byte.

Two things here are for large objects (docs/benchmarks.md, "Issue 16: figure 1b, the body loop"):
- The body is read as stored (`decode_content=False`): an object stored with a Content-Encoding (gzip)
  was decompressed by urllib3 on the way, so its bytes never matched its size or ETag and it could not
  be mirrored at all. The ETag covers the stored bytes, so those are what the mirror keeps and checks.
- Write-back starts while the object is still arriving (`WRITE_BACK`): left to the kernel, a large
  object's pages stay dirty until its fsync, which then waits for all of them at once (0.23-0.28 s per
  500 MiB at the end of a reconcile, on a disk writing about 2 GB/s), with the cores idle; asked early,
  the disk writes while the next bytes are received and hashed, and the fsync finds little left to do.
  The fsync itself is unchanged: durability is still decided there (and by core/batch_sync.py).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from actors.minio.object_get import ObjectGets

PLAIN_ETAG = re.compile(r"^[0-9a-f]{32}$")  # a single-part upload: the ETag is the MD5 of the bytes
CHUNK = 1 << 20
WRITE_BACK = 8 << 20  # bytes of an object written before the kernel is asked to write them out
ADVISE = getattr(os, "posix_fadvise", None)  # Linux and the BSDs; elsewhere the fsync does it all


def _write_back(fd: int, start: int, end: int) -> None:
    """Start writing the file's bytes [start, end) to disk, without waiting. On Linux, fadvise DONTNEED
    writes dirty pages out (asynchronously, as PostgreSQL's pg_flush_data falls back to) and drops the
    pages already written: a mirror of a large store does not push the production data's pages out of
    the page cache. Only an early start: a failure to write is still reported by the file's fsync."""
    try:
        ADVISE(fd, start, end - start, os.POSIX_FADV_DONTNEED)  # type: ignore[misc]
    except OSError:  # a file system that takes no advice: the fsync writes everything, as before
        pass


def download(gets: ObjectGets, bucket: str, key: str, temp: Path, fd: int, etag: str | None = None, size: int | None = None,
             unless: str | None = None, sync: bool = True) -> tuple[str, Any]:
    """Fetch the object into `temp` through `fd` (open for writing; closed here); return its MD5, after
    checking size and ETag, and the response headers (they describe the served bytes as a stat would).
    `etag`/`size`: exactly that object (If-Match: should it change meanwhile, the server refuses instead of
    sending other bytes). `unless`: the ETag the mirror holds (If-None-Match: an unchanged object costs one
    round trip and no bytes; NotModified). sync=True: the temp file is fsynced here, on the downloading
    thread (threads in parallel: the journal takes several in one commit), not in the index commit that
    others wait for; a reconcile passes False and its batches are fsynced together before their commit
    (core/batch_sync.py). Written with os.write: a buffered file object costs three more system calls.
    Every `WRITE_BACK` bytes, write-back of the newest window is started and the window before it (written
    out by then) is dropped from the page cache."""
    md5, got, windows = hashlib.md5(), 0, (0, 0)
    conditions = {"If-Match": f'"{etag}"'} if etag else {"If-None-Match": f'"{unless}"'} if unless else {}
    try:
        response = gets.get(bucket, key, conditions)  # NotModified on a 304
        try:
            headers = response.headers  # case-insensitive
            served = (headers.get("etag") or "").strip('"')
            for chunk in response.stream(CHUNK, decode_content=False):  # the stored bytes, as the ETag covers them
                md5.update(chunk)
                got += len(chunk)
                view = memoryview(chunk)
                while view:  # a write may take only part of a chunk
                    view = view[os.write(fd, view):]
                if ADVISE is not None and got - windows[1] >= WRITE_BACK:
                    _write_back(fd, windows[0], got)
                    windows = (windows[1], got)
            if sync:
                os.fsync(fd)
        finally:
            response.close()
            response.release_conn()
    finally:
        os.close(fd)
    where, etag = f"s3://{bucket}/{key}", etag or served
    size = size if size is not None else int(headers.get("content-length", "-1"))
    if served != etag:
        raise RuntimeError(f"{where} changed while being copied (ETag {etag} became {served}); retrying helps")
    if got != size:
        raise RuntimeError(f"{where}: got {got} bytes, the source says {size}; the copy was cut short")
    if PLAIN_ETAG.match(etag) and md5.hexdigest() != etag:
        raise RuntimeError(f"{where}: the MD5 of the copied bytes ({md5.hexdigest()}) differs from its ETag")
    return md5.hexdigest(), headers


__all__ = ["PLAIN_ETAG", "download"]
