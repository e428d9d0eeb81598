"""Integrity checks shared by the components: artifacts against the manifest, gzip, zstd and tar streams."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import zstandard

from core.atomic import digest_of_file
from core.bounded_tar import open_tar_gz
from core.encryption import check_ciphertext
from core.manifest import Artifact, ComponentRecord
from core.points import Point
from core.safe_paths import UnsafePath


class CorruptArtifact(Exception):
    """An artifact is unreadable or does not end as it should."""


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# What reading a damaged compressed stream raises.
DECODE_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError)


def open_compressed(path: Path | BinaryIO) -> BinaryIO:
    """The plain bytes of a gzip or zstd file (told apart by their magic), or of an uncompressed one;
    `path` may be a file already open (read from its start)."""
    with _source(path) as probe:
        magic = probe.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(_rewound(path), "rb")  # type: ignore[return-value]
    if magic == ZSTD_MAGIC:
        return io.BufferedReader(_ZstdFile(path), 1 << 20)  # type: ignore[return-value]
    return open(path, "rb") if isinstance(path, (str, Path)) else _rewound(path)


def _rewound(path: Path | BinaryIO) -> Path | BinaryIO:
    if not isinstance(path, (str, Path)):
        path.seek(0)
    return path


@contextmanager
def _source(path: Path | BinaryIO) -> Iterator[BinaryIO]:
    """A path opened (and closed afterwards), or an open file rewound (and left open)."""
    if isinstance(path, (str, Path)):
        with open(path, "rb") as handle:
            yield handle
    else:
        path.seek(0)
        yield path


class _ZstdFile(io.RawIOBase):
    """The plain bytes of a zstd file, frame after frame; raises ZstdError if it ends inside a frame
    (zstandard's own stream reader returns a cut-short file's bytes without a word)."""

    def __init__(self, path: Path | BinaryIO):
        self.owned = isinstance(path, (str, Path))  # a file handed in is its owner's to close
        self.file, self.buffer, self.ended = open(path, "rb") if self.owned else _rewound(path), b"", False
        self.context = zstandard.ZstdDecompressor()
        self.frame = self.context.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self.buffer and not self.ended:
            data = self.file.read(1 << 18)
            if not data:
                if not self.frame.eof:
                    raise zstandard.ZstdError("the stream ends inside a frame: the file is cut short")
                self.ended = True
                break
            out = []
            while data:
                if self.frame.eof:  # the next frame
                    self.frame = self.context.decompressobj()
                out.append(self.frame.decompress(data))
                data = self.frame.unused_data if self.frame.eof else b""
            self.buffer = b"".join(out)
        size = min(len(target), len(self.buffer))
        target[:size] = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return size

    def close(self) -> None:
        if self.owned:
            self.file.close()
        super().close()


def check_zstd(path: Path | BinaryIO, chunk: int = 1 << 20) -> int:
    """Read the whole zstd stream (each frame's checksum is checked at its end); return the plain size."""
    total = 0
    try:
        with _source(path) as probe:
            magic = probe.read(4)
        if magic != ZSTD_MAGIC:
            raise CorruptArtifact(f"{_name(path)}: not a zstd stream (wrong magic)")
        with open_compressed(path) as stream:
            while block := stream.read(chunk):
                total += len(block)
    except DECODE_ERRORS as exc:
        raise CorruptArtifact(f"{_name(path)}: not a sound zstd stream ({exc})") from None
    return total


def _name(path: Path | BinaryIO) -> str:
    return Path(path).name if isinstance(path, (str, Path)) else Path(str(getattr(path, "artifact", "artifact"))).name


def check_gzip(path: Path | BinaryIO, chunk: int = 1 << 20) -> int:
    """Read the whole gzip stream (CRC and length are checked at its end); return the plain size."""
    total = 0
    try:
        with gzip.open(_rewound(path), "rb") as stream:
            while block := stream.read(chunk):
                total += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptArtifact(f"{_name(path)}: not a sound gzip stream ({exc})") from None
    return total


def check_tar_gz(path: Path | BinaryIO) -> list[str]:
    """Read every member of a .tar.gz; return the member names."""
    try:
        with _source(path) as raw, open_tar_gz(raw) as archive:  # untrusted: bounded whatever its headers claim
            names = []
            for member in archive:
                if member.isfile():
                    extracted = archive.extractfile(member)
                    while extracted and extracted.read(1 << 20):
                        pass
                names.append(member.name)
            return names
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise CorruptArtifact(f"{_name(path)}: not a sound tar.gz ({exc})") from None


def verify_artifacts(point: Point, record: ComponentRecord) -> list[str]:
    """Every artifact the record names exists with its size and SHA-256, and its container format reads."""
    problems = []
    for artifact in record.artifacts:
        if artifact.encrypted is not None:

            problems += check_ciphertext(point, artifact)
            continue
        try:
            with point.open(artifact.name) as handle:
                problems += _check_artifact(handle, artifact)
        except FileNotFoundError:
            problems.append(f"{artifact.name} is missing")
        except UnsafePath as exc:
            problems.append(str(exc))
    return problems


def _check_artifact(handle: BinaryIO, artifact: Artifact) -> list[str]:
    handle.artifact = artifact.name  # type: ignore[attr-defined] - named in CorruptArtifact messages
    size = os.fstat(handle.fileno()).st_size
    if size != artifact.bytes:
        return [f"{artifact.name} has {size} bytes, the manifest says {artifact.bytes}"]
    if digest_of_file(handle) != artifact.sha256:
        return [f"{artifact.name}: SHA-256 differs from the manifest (the file changed after the backup)"]
    try:
        if artifact.kind == "gzip":
            check_gzip(handle)
        elif artifact.kind == "zst":
            check_zstd(handle)
        elif artifact.kind == "tar.gz":
            check_tar_gz(handle)
    except CorruptArtifact as exc:
        return [str(exc)]
    return []
