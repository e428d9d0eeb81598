"""Writing files so that a reader never sees a partial one: temp name, fsync, check, rename.

Everything under the storage root is private: files 0600, folders 0700 (dumps and .env copies hold
secrets).
"""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_MARK = ".tmp-"


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 and return it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temp(path: Path) -> bool:
    return TEMP_MARK in path.name


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{TEMP_MARK}{secrets.token_hex(4)}")


class HashingWriter:
    """A binary file wrapper that counts and hashes (SHA-256) what goes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.sha256.update(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


@dataclass
class Written:
    path: Path
    bytes: int
    sha256: str


@contextmanager
def atomic_file(final: Path, check: Callable[[Path], None] | None = None) -> Iterator[HashingWriter]:
    """Yield a writer on a temp file; on success fsync it, run `check` on it, then rename to `final`.

    On any error (in the body or in the check) the temp file is removed and nothing appears under
    `final`. The result (size, SHA-256) is available afterwards as `writer.result`.
    """
    tmp = temp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = HashingWriter(raw)
            yield writer
            raw.flush()
            os.fsync(raw.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        writer.result = Written(final, writer.bytes, writer.sha256.hexdigest())  # type: ignore[attr-defined]
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(final: Path, data: bytes) -> Written:
    with atomic_file(final) as out:
        out.write(data)
    return out.result  # type: ignore[attr-defined]


def digest_of(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of a file, read in chunks (SHA-256 for manifests, MD5 for S3 ETags)."""
    with open(path, "rb") as handle:
        return digest_of_file(handle, algorithm, chunk)


def digest_of_file(handle: BinaryIO, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest of an open file from where it stands to its end."""
    digest = hashlib.new(algorithm)
    while block := handle.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    return digest_of(path, "sha256", chunk)


def append_line(path: Path, line: str) -> None:
    """Append one line durably (history and audit logs): O_APPEND keeps concurrent lines whole."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        data = (line.rstrip("\n") + "\n").encode()
        start = os.fstat(fd).st_size
        if os.write(fd, data) != len(data):  # a full disk took part of it: no half line stays behind
            os.ftruncate(fd, start)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_stale(folder: Path, pattern: str, older_than_seconds: float = 86_400) -> None:
    """Remove what a killed process left in a scratch folder (fetched or decrypted copies hold data
    in the clear): entries matching `pattern` untouched for a day."""

    if not folder.is_dir():
        return
    for entry in folder.glob(pattern):
        try:
            if time.time() - entry.stat().st_mtime > older_than_seconds:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        except FileNotFoundError:
            continue
