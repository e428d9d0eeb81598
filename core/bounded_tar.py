"""Reading an untrusted .tar.gz (a point's config archive) with memory bounded whatever it claims.

tarfile reads a pax extended header or a GNU long name whole, at the size its header claims: a few MB of
gzip can claim gigabytes. Through `open_tar_gz`, no single read of the decompressed stream may ask for
more than `limit` bytes; one that does raises HeaderTooBig (a tarfile.ReadError, so the callers' "cannot
be read" handling applies). Member data is read by the callers in chunks of their own choosing.
"""
from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

MAX_HEADER = 1 << 20  # one tar header's metadata (pax records, GNU long names)


class HeaderTooBig(tarfile.ReadError):
    """A tar header claims more metadata than any archive of ours holds."""


class BoundedReads(io.RawIOBase):
    """A seekable reader of a decompressed stream that refuses any single read bigger than `limit`."""

    def __init__(self, raw, limit: int):
        self.raw, self.limit = raw, limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self.limit:
            raise HeaderTooBig(f"a tar header claims {size} bytes of metadata, more than {self.limit}: the archive "
                               "was tampered with")
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


@contextmanager
def open_tar_gz(path: Path | BinaryIO, limit: int = MAX_HEADER) -> Iterator[tarfile.TarFile]:
    with gzip.open(path, "rb") as unpacked, tarfile.open(fileobj=BoundedReads(unpacked, limit), mode="r:") as archive:
        yield archive
