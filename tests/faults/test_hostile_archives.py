"""Hostile archives in the storage root (untrusted input): a config tar with setuid or world-writable
members, members claiming gigabytes, links, devices, FIFOs, twins, a truncated gzip; a Redis dump with a
line that is not JSON or a line of a gigabyte. Each is refused naming the file and what is wrong, with
nothing written outside RAGFlow's folder and nothing half-changed; what is restored gets sane modes."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from core.atomic import sha256_of
from tests.faults.harness import CLI, cli
from tests.faults.test_storage import redis_config

ARTIFACT = "config_backup.tar.gz"
MEMBER_CLAIM = 32 << 20


class Zeros(io.RawIOBase):
    """`size` zero bytes, read in chunks: a member of any size without holding it."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def member(name: str, data: bytes = b"evil: 1\n", mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
           owner: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, mode, *owner
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def tamper_config(point, members, listed: list[dict] | None = None, tail: bytes = b"") -> Path:
    """Replace the point's config tar by one of our making and make its manifest vouch for it (the manifest is
    in the storage root too): the artifact's size and SHA-256, and the files it lists (default: the members)."""
    path = point.folder / ARTIFACT
    path.unlink()  # the point is hard-linked into weekly/monthly: a new file, not the shared inode
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, (Zeros(info.size) if data is None else io.BytesIO(data)) if info.isfile() else None)
    if tail:
        path.write_bytes(path.read_bytes()[: -len(tail)])  # truncated: its last bytes lost
    if listed is None:
        listed = [{"path": info.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for info, data in members if data is not None]
    vouch(point, "config", path, files=listed)
    return path


def vouch(point, component: str, path: Path, **details) -> None:
    manifest = json.loads((point.folder / "manifest.json").read_text())
    record = manifest["components"][component]
    record["artifacts"][0].update(bytes=path.stat().st_size, sha256=sha256_of(path))
    record["details"].update(details)
    (point.folder / "manifest.json").write_text(json.dumps(manifest))


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode) for p in folder.rglob("*")}


def tree(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under `folder`: its mode and SHA-256."""
    return {str(p.relative_to(folder)): (stat.S_IMODE(p.lstat().st_mode), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def peak_rss_of(config: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI from a fresh process and return its result and the CLI's peak RSS in KiB (that process
    waits for it alone, so RUSAGE_CHILDREN is the CLI's own high-water mark)."""
    probe = ("import json, resource, subprocess, sys\n"
             "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(json.dumps({'code': done.returncode, 'out': done.stdout, 'err': done.stderr,\n"
             "                  'peak': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    ran = subprocess.run([sys.executable, "-c", probe, CLI, "--config", str(config), *args], capture_output=True,
                         text=True, timeout=600, check=True)
    report = json.loads(ran.stdout)
    return subprocess.CompletedProcess(args, report["code"], report["out"], report["err"]), report["peak"]


def said(done: subprocess.CompletedProcess) -> str:
    return " ".join((done.stdout + done.stderr).split())


def restore_config(config: Path, point) -> subprocess.CompletedProcess:
    return cli(config, "restore", "--point", point.ref, "-C", "config", "--yes")


def no_safety_point(root: Path) -> bool:
    return not any((root / "safety").iterdir()) if (root / "safety").is_dir() else True


@pytest.mark.fault("restore: a config tar with members of mode 06777 and 0666 and a new setuid member owned "
                   "by another uid",
                   "restored (exit 0) without setuid/setgid/sticky bits and without group/other write (0755, "
                   "0644), new files owned by the agent, never by the archive's uid")
def test_setuid_and_world_writable_members_are_restored_with_sane_modes_and_our_owner(tmp_path, config_point):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    tamper_config(point, [
        member(".env", b"MYSQL_PASSWORD=secret\n", mode=0o6777, owner=(4242, 4242)),
        member("docker-compose.yml", b"services: {}\n", mode=0o666),
        member("nginx/evil.sh", b"#!/bin/sh\nid\n", mode=0o4755, owner=(4242, 4242)),
    ])

    done = restore_config(config, point)
    assert done.returncode == 0, said(done)
    assert modes(docker)[".env"] == 0o755 and modes(docker)["docker-compose.yml"] == 0o644
    assert modes(docker)["nginx/evil.sh"] == 0o755
    assert (docker / "nginx" / "evil.sh").stat().st_uid == os.getuid() != 4242
    assert not [name for name, mode in modes(docker).items() if mode & (stat.S_ISUID | stat.S_ISGID | 0o022)]


@pytest.mark.fault("restore: a 1.5 MB config_backup.tar.gz of 48 members of 32 MiB of zeros (the manifest "
                   "tampered to list them)",
                   "refused before any member is read ('too big to be RAGFlow's ... at most 8 MiB a file'), "
                   "exit 1, nothing changed, no safety point; the restore process stays far below the claimed "
                   "1.5 GiB (peak RSS bounded)")
def test_a_config_archive_of_huge_members_is_refused_with_memory_bounded(tmp_path, config_point):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    before = tree(docker)
    members = [(member(f"big-{n}.yml")[0], None) for n in range(48)]
    for info, _ in members:
        info.size = MEMBER_CLAIM
    zero = hashlib.sha256(bytes(MEMBER_CLAIM)).hexdigest()
    path = tamper_config(point, members, listed=[{"path": info.name, "bytes": MEMBER_CLAIM, "sha256": zero}
                                                 for info, _ in members])
    assert path.stat().st_size < 4 << 20

    done, peak_kib = peak_rss_of(config, "restore", "--point", point.ref, "-C", "config", "--yes")
    assert done.returncode == 1, said(done)
    assert f"{point.ref}/{ARTIFACT}" in said(done) and "too big to be RAGFlow's" in said(done)
    assert peak_kib < 256 << 10, f"peak RSS {peak_kib} KiB"  # a memory bound, far below 48 x 32 MiB
    assert tree(docker) == before and no_safety_point(tmp_path / "backups")


@pytest.mark.fault("restore: a config tar member claiming 32 MiB where the manifest lists a small file",
                   "refused naming the member ('claims N bytes, the manifest lists M') before its bytes are "
                   "read; exit 1, nothing changed; peak RSS bounded")
def test_a_member_larger_than_the_manifest_says_is_refused_before_it_is_read(tmp_path, config_point):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    before = tree(docker)
    info, _ = member(".env")
    info.size = MEMBER_CLAIM
    tamper_config(point, [(info, None)], listed=[{"path": ".env", "bytes": 22, "sha256": "0" * 64}])

    done, peak_kib = peak_rss_of(config, "restore", "--point", point.ref, "-C", "config", "--yes")
    assert done.returncode == 1, said(done)
    assert f"member '.env' claims {MEMBER_CLAIM} bytes, the manifest lists 22" in said(done)
    assert peak_kib < 256 << 10, f"peak RSS {peak_kib} KiB"
    assert tree(docker) == before and no_safety_point(tmp_path / "backups")


HOSTILE = {
    "fifo": ([member("evil-fifo", b"", kind=tarfile.FIFOTYPE)], "member 'evil-fifo' is a FIFO"),
    "device": ([member("evil-dev", b"", kind=tarfile.CHRTYPE)], "member 'evil-dev' is a device"),
    "symlink": ([member("evil-link", b"", kind=tarfile.SYMTYPE)], "member 'evil-link' is a symlink"),
    "twice": ([member(".env", b"A=1\n"), member(".env", b"A=1\n")], "member '.env' is twice in the archive"),
    "dotdot": ([member("../outside.yml")], "'../outside.yml' is not a plain relative path"),
    "absolute": ([member("/tmp/outside.yml")], "'/tmp/outside.yml' is not a plain relative path"),
}


@pytest.mark.fault("restore: a config tar holding a FIFO, a device, a symlink, a member twice, a '..' or an "
                   "absolute name",
                   "refused naming the file and the member and what it is; exit 1; nothing written inside or "
                   "outside RAGFlow's folder; no safety point")
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_members_are_refused_naming_the_member(tmp_path, config_point, case):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    before, outside = tree(docker), tree(tmp_path / "ragflow")
    members, why = HOSTILE[case]
    listed = [{"path": ".env", "bytes": 4, "sha256": hashlib.sha256(b"A=1\n").hexdigest()}] if case == "twice" else \
        [{"path": info.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for info, data in members]
    tamper_config(point, members, listed=listed)

    done = restore_config(config, point)
    assert done.returncode == 1, said(done)
    assert ARTIFACT in said(done) and why in said(done) and "Traceback" not in said(done)
    assert tree(docker) == before and tree(tmp_path / "ragflow") == outside
    assert not Path("/tmp/outside.yml").exists() and no_safety_point(tmp_path / "backups")


@pytest.mark.fault("restore: a truncated config_backup.tar.gz (its manifest vouching for it)",
                   "refused ('not a sound tar.gz' / 'cannot be read'), exit 1, no traceback, nothing changed")
def test_a_truncated_config_archive_is_refused(tmp_path, config_point):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    before = tree(docker)
    data = b"MYSQL_PASSWORD=other\n" * 5000
    tamper_config(point, [member(".env", data)], tail=b"x" * 64)

    done = restore_config(config, point)
    assert done.returncode == 1, said(done)
    assert ARTIFACT in said(done) and "Traceback" not in said(done)
    assert tree(docker) == before and no_safety_point(tmp_path / "backups")


# ---------------------------------------------------------------- the Redis dump


def redis_point(tmp_path, private_redis, inbox):
    from core.points import Storage

    client = private_redis.client(db=1)
    client.set("ragflow:system:secret_key", "s3cret")
    client.set("kept", "as it was")
    root = tmp_path / "backups"
    root.mkdir()
    config = redis_config(tmp_path, root, private_redis, inbox)
    assert cli(config, "backup", "--local").returncode == 0
    [point] = Storage(root).points("daily")
    client.set("kept", "changed after the backup")
    return config, point, client


def tamper_dump(point, lines: list[bytes], level: int = 6) -> None:
    path = point.folder / "redis_dump.rdb.gz"
    path.unlink()
    header = json.dumps({"format": 1, "kind": "ragflow-backup redis dump", "redis_version": "7", "db": 1,
                         "keys": len(lines), "created_at": "2026-11-24T00:00:00+00:00"}).encode()
    with gzip.GzipFile(path, "wb", compresslevel=level, mtime=0) as out:
        out.write(header + b"\n")
        for line in lines:
            out.write(line)
    vouch(point, "redis", path)


@pytest.mark.fault("restore: a Redis dump whose second line is not JSON (the manifest vouching for it)",
                   "refused before any key is written or a safety point taken ('redis_dump.rdb.gz: line 2 is "
                   "not JSON'), exit 1; the keys are as they were")
def test_a_redis_dump_line_that_is_not_json_is_refused_before_any_change(tmp_path, private_redis, inbox):
    config, point, client = redis_point(tmp_path, private_redis, inbox)
    tamper_dump(point, [b'{"key": "a2VwdA==", "ttl_ms": -1, "type": "string", "dump": "AA=="}\n'[:30] + b"\n"])

    done = cli(config, "restore", "--point", point.ref, "-C", "redis", "--yes")
    assert done.returncode == 1, said(done)
    assert "redis_dump.rdb.gz: line 2 is not JSON" in said(done) and "nothing was changed" in said(done)
    assert client.get("kept") == b"changed after the backup" and no_safety_point(tmp_path / "backups")


@pytest.mark.fault("restore: a Redis dump with one line of 1 GiB (a few MB gzipped)",
                   "refused ('line 2 is longer than 64 MiB'), exit 1, nothing changed; the restore process's "
                   "peak RSS stays far below the line's size")
def test_a_redis_dump_with_a_gigabyte_line_is_refused_with_memory_bounded(tmp_path, private_redis, inbox):
    config, point, client = redis_point(tmp_path, private_redis, inbox)
    path = point.folder / "redis_dump.rdb.gz"
    path.unlink()
    header = json.dumps({"format": 1, "kind": "ragflow-backup redis dump", "redis_version": "7", "db": 1,
                         "keys": 1, "created_at": "2026-11-24T00:00:00+00:00"}).encode()
    with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as out:
        out.write(header + b'\n{"key": "')
        block = b"A" * (1 << 20)
        for _ in range(1024):
            out.write(block)
        out.write(b'"}\n')
    vouch(point, "redis", path)

    done, peak_kib = peak_rss_of(config, "restore", "--point", point.ref, "-C", "redis", "--yes")
    assert done.returncode == 1, said(done)
    assert "redis_dump.rdb.gz: line 2 is longer than 64 MiB" in said(done)
    assert peak_kib < 512 << 10, f"peak RSS {peak_kib} KiB"  # far below the 1 GiB line
    assert client.get("kept") == b"changed after the backup" and no_safety_point(tmp_path / "backups")


@pytest.mark.fault("restore: a config tar whose pax header claims 1 GiB of metadata (a 1 MB gzip bomb)",
                   "refused ('a tar header claims 1073741824 bytes of metadata'), exit 1, nothing changed; the "
                   "restore process's peak RSS stays far below 1 GiB (tarfile would read such a header whole)")
def test_a_pax_header_bomb_is_refused_with_memory_bounded(tmp_path, config_point):
    config, point = config_point
    docker = tmp_path / "ragflow" / "docker"
    before = tree(docker)
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 1 << 30
    path = point.folder / ARTIFACT
    path.unlink()  # the point is hard-linked into weekly/monthly: a new file, not the shared inode
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write(header.tobuf(tarfile.USTAR_FORMAT))
        block = b"9" * (1 << 20)
        for _ in range(1024):
            out.write(block)
    vouch(point, "config", path)

    done, peak_kib = peak_rss_of(config, "restore", "--point", point.ref, "-C", "config", "--yes")
    assert done.returncode == 1, said(done)
    assert ARTIFACT in said(done) and "a tar header claims 1073741824 bytes of metadata" in said(done)
    assert peak_kib < 256 << 10, f"peak RSS {peak_kib} KiB"
    assert tree(docker) == before and no_safety_point(tmp_path / "backups")
