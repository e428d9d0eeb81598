"""Integrity checks shared by the components: artifacts against the manifest, gzip and tar streams."""
from __future__ import annotations

import gzip
import tarfile
import zlib
from pathlib import Path

from agent.atomic import sha256_of
from agent.manifest import ComponentRecord
from agent.points import Point


class CorruptArtifact(Exception):
    """An artifact is unreadable or does not end as it should."""


def check_gzip(path: Path, chunk: int = 1 << 20) -> int:
    """Read the whole gzip stream (CRC and length are checked at its end); return the plain size."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while block := stream.read(chunk):
                total += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptArtifact(f"{path.name}: not a sound gzip stream ({exc})") from None
    return total


def check_tar_gz(path: Path) -> list[str]:
    """Read every member of a .tar.gz; return the member names."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            names = []
            for member in archive:
                if member.isfile():
                    extracted = archive.extractfile(member)
                    while extracted and extracted.read(1 << 20):
                        pass
                names.append(member.name)
            return names
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise CorruptArtifact(f"{path.name}: not a sound tar.gz ({exc})") from None


def verify_artifacts(point: Point, record: ComponentRecord) -> list[str]:
    """Every artifact the record names exists with its size and SHA-256, and its container format reads."""
    problems = []
    for artifact in record.artifacts:
        if artifact.encrypted is not None:
            from agent.encryption import check_ciphertext

            problems += check_ciphertext(point, artifact)
            continue
        path = point.folder / artifact.name
        if not path.is_file():
            problems.append(f"{artifact.name} is missing")
            continue
        size = path.stat().st_size
        if size != artifact.bytes:
            problems.append(f"{artifact.name} has {size} bytes, the manifest says {artifact.bytes}")
            continue
        if sha256_of(path) != artifact.sha256:
            problems.append(f"{artifact.name}: SHA-256 differs from the manifest (the file changed after the backup)")
            continue
        try:
            if artifact.kind == "gzip":
                check_gzip(path)
            elif artifact.kind == "tar.gz":
                check_tar_gz(path)
        except CorruptArtifact as exc:
            problems.append(str(exc))
    return problems
