"""Config restore: put RAGFlow's docker/ files back from a point's config_backup.tar.gz or from a commit of
the config Git history (actors/config/backup.py), with a diff to look at first.

Both sources are untrusted input (a storage root can be tampered with): the tar is first checked
against the manifest (artifact SHA-256, then every member's SHA-256), and member names must be plain
relative paths: no absolute path, no '..', no '.git'; anything but a regular file (symlink, hard link,
folder, device, FIFO) is refused. The tar is read as a stream: each member's name, kind and size are checked
against the manifest (and caps, the manifest being untrusted too) before any of its bytes are kept, so a
gzip bomb or a member claiming gigabytes cannot fill memory. All of that is checked before anything is written.

Writing is staged: every file goes to a temp name next to its final name (written, fsync'ed, checked),
and only when all are staged are they renamed into place, so a failure leaves the target as it was.
Files present now but absent in the chosen version are left alone unless `delete_extra=True`.

Modes: the tar keeps each file's mode; Git keeps only the execute bit, so a file restored from a commit
keeps its current mode (0644/0755 when new) with the execute bit set as the commit says. Either way the
setuid/setgid/sticky bits and group/other write are dropped. As root, an existing file keeps its owner; a
new one belongs to the agent (never to the uid/gid the archive names).

config_files imports `restore` from here at its end, so this module imports config_files lazily.
"""
from __future__ import annotations

import difflib
import errno
import hashlib
import logging
import os
import stat
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from actors.config.backup import ARTIFACT, NAME, collect_files, git_repo_path, required_ragflow_dir
from core.atomic import fsync_dir, temp_path
from core.bounded_tar import open_tar_gz
from core.checks import verify_artifacts
from core.component import PermanentError
from core.config import Settings
from core.manifest import ComponentRecord
from core.points import Point
from core.redact import mask_secrets  # one masking for diffs and every message

LOG = logging.getLogger("ragflow_backup.config_restore")
# Caps on what a config archive (untrusted: the storage root can be tampered with) may hold. RAGFlow's
# docker/ folder is a few hundred KiB; a member, a total or a count beyond these is not one of ours.
MAX_FILE = 8 << 20
MAX_TOTAL = 64 << 20
MAX_MEMBERS = 10_000
CHUNK = 1 << 16
# A restored file is never setuid/setgid/sticky nor writable by group or others, whatever the source says.
SAFE_MODE_BITS = 0o755


@dataclass(frozen=True)
class VersionFile:
    path: str  # relative, validated
    data: bytes
    mode: int | None  # permission bits (tar); None from Git, which keeps only `executable`
    executable: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class ConfigRestoreResult:
    source: str  # "daily/2026-11-24 config_backup.tar.gz" or "commit 1a2b3c..."
    target_dir: Path
    dry_run: bool
    written: list[str] = field(default_factory=list)  # (to be) written: missing or different now
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # (to be) deleted: delete_extra
    left_alone: list[str] = field(default_factory=list)  # present now, absent in the version, kept
    expected: int = 0  # files of the chosen version (after the `files` selection)
    found: int = 0  # of them, matching bytes and mode afterwards
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Plan:
    source: str
    root: Path
    version: dict[str, VersionFile]  # the selected files of the chosen version
    modes: dict[str, int] = field(default_factory=dict)  # the mode each file of `version` gets
    write: list[VersionFile] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    current: dict[str, tuple[bytes, int] | None] = field(default_factory=dict)


# ---------------------------------------------------------------- the chosen version


def safe_relpath(name: str, where: str, why: str = "") -> str:
    """`name` if it is a plain relative path that stays inside the folder; PermanentError otherwise."""
    parts = name.split("/") if isinstance(name, str) else []
    bad = (not name or "\x00" in name or "\\" in name or name.startswith("/") or not parts
           or any(part in ("", ".", "..", ".git") for part in parts))
    if bad:
        raise PermanentError(f"{where}: {name!r} is not a plain relative path (absolute, '..', '.git' or empty "
                             f"parts){why}; nothing was restored")
    return name


def _record_of(point: Point, record: ComponentRecord | None) -> ComponentRecord:

    if record is None:
        record = point.manifest().components.get(NAME)
    if record is None or record.status != "ok":
        raise PermanentError(f"point {point.ref} holds no successful config backup; choose another point "
                             "(`ragflow-backup list`) or a commit of the config history")
    return record


def _member_kind(member: tarfile.TarInfo) -> str:
    return ("a symlink" if member.issym() else "a hard link" if member.islnk() else "a folder" if member.isdir()
            else "a FIFO" if member.isfifo() else "a device" if member.isdev() else "not a regular file")


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo, name: str, size: int, sha256: str,
                 where: str) -> bytes:
    """The member's bytes, read in chunks and checked against the manifest's size and SHA-256 as they come."""
    source = archive.extractfile(member)
    digest, chunks, got = hashlib.sha256(), [], 0
    while chunk := source.read(min(CHUNK, size + 1 - got)):  # type: ignore[union-attr]
        got += len(chunk)
        if got > size:
            break
        digest.update(chunk)
        chunks.append(chunk)
    if got != size or digest.hexdigest() != sha256:
        raise PermanentError(f"{where}: member {name!r} differs from the manifest ({got} bytes read, {size} listed, "
                             "or another SHA-256); nothing was restored: choose another point or a commit of the "
                             "config history")
    return b"".join(chunks)


def _listed_files(record: ComponentRecord, where: str) -> dict[str, tuple[int, str]]:
    """{path: (bytes, sha256)} from the manifest (itself untrusted: sizes are capped here too)."""
    listed: dict[str, tuple[int, str]] = {}
    files = record.details.get("files")
    for entry in files if isinstance(files, list) else []:
        ok = (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str)
              and isinstance(entry.get("bytes"), int) and not isinstance(entry.get("bytes"), bool))
        if not ok:
            raise PermanentError(f"the manifest's list of config files for {where} is malformed ({str(entry)[:80]!r}); "
                                 "choose another point")
        listed[entry["path"]] = (entry["bytes"], entry["sha256"])
    too_big = sorted(path for path, (size, _) in listed.items() if not 0 <= size <= MAX_FILE)
    if too_big or sum(size for size, _ in listed.values()) > MAX_TOTAL or len(listed) > MAX_MEMBERS:
        raise PermanentError(f"the manifest of {where} lists config files too big to be RAGFlow's "
                             f"({', '.join(too_big[:5]) or f'{len(listed)} files in all'}; at most {MAX_FILE >> 20} MiB "
                             f"a file, {MAX_TOTAL >> 20} MiB and {MAX_MEMBERS} files in all); nothing was restored")
    return listed


def _from_tar(point: Point, record: ComponentRecord | None) -> tuple[str, dict[str, VersionFile]]:

    record = _record_of(point, record)
    where = f"{point.ref}/{ARTIFACT}"
    problems = verify_artifacts(point, record)
    if problems:
        raise PermanentError(f"{where} does not match its manifest ({'; '.join(problems)}); nothing was restored: "
                             "choose another point or a commit of the config history")
    listed = _listed_files(record, where)
    if not listed:
        raise PermanentError(f"the manifest of {point.ref} lists no config files to check {ARTIFACT} against; "
                             "choose another point")
    found: dict[str, VersionFile] = {}
    try:
        # Read as a stream: every member is checked (name, kind, size against the manifest) before a byte
        # of it is kept, so memory stays bounded by the manifest's capped sizes whatever the archive claims.
        with open_tar_gz(point.folder / ARTIFACT) as archive:
            for member in archive:
                name = safe_relpath(member.name, where, ": the archive was tampered with")
                if not member.isfile():
                    raise PermanentError(f"{where}: member {name!r} is {_member_kind(member)}; the archive was "
                                         "tampered with, nothing was restored")
                if name in found or name not in listed:
                    why = "twice in the archive" if name in found else "not listed in the manifest"
                    raise PermanentError(f"{where}: member {name!r} is {why}; the archive was tampered with, "
                                         "nothing was restored")
                size, sha256 = listed[name]
                if member.size != size:
                    raise PermanentError(f"{where}: member {name!r} claims {member.size} bytes, the manifest lists "
                                         f"{size}; the archive was tampered with, nothing was restored")
                data = _read_member(archive, member, name, size, sha256, where)
                found[name] = VersionFile(name, data, stat.S_IMODE(member.mode), bool(member.mode & stat.S_IXUSR))
                archive.members.clear()  # tarfile keeps every header it read; we need none of them again
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        raise PermanentError(f"{where} cannot be read ({exc}); nothing was restored: choose another point") from None
    missing = sorted(set(listed) - set(found))
    if missing:
        raise PermanentError(f"{where}: {', '.join(missing[:10])} listed in the manifest but not in the archive; "
                             "nothing was restored: choose another point or a commit of the config history")
    return f"{point.ref} {ARTIFACT}", found


def _from_commit(settings: Settings, commit: str) -> tuple[str, dict[str, VersionFile]]:
    import git  # lazy: GitPython (heavy; needs a git binary): only when config files are kept


    path = git_repo_path(settings)
    if not (path / ".git").is_dir():
        raise PermanentError(f"there is no config history at {path} yet (it is written by the config backup)")
    if not commit or commit.startswith("-") or not commit.strip():
        raise PermanentError(f"{commit!r} is not a commit; see the config history for the shas")
    repo = git.Repo(path)
    try:
        obj = repo.commit(commit)
        obj.tree  # noqa: B018 - a full sha is taken on trust until the object is read
    except (ValueError, git.BadName, git.BadObject):
        raise PermanentError(f"no commit {commit!r} in the config history at {path}; see the history for the shas") \
            from None
    where = f"commit {obj.hexsha[:12]} of {path}"
    found: dict[str, VersionFile] = {}
    for item in obj.tree.traverse():
        if item.type == "tree":
            continue
        name = safe_relpath(item.path, where, ": the history was tampered with")
        if item.type != "blob" or stat.S_ISLNK(item.mode):
            raise PermanentError(f"{where}: {name!r} is not a regular file (a symlink or submodule); "
                                 "nothing was restored")
        if item.size > MAX_FILE:
            raise PermanentError(f"{where}: {name!r} is too big to be a config file; nothing was restored")
        found[name] = VersionFile(name, item.data_stream.read(), None, bool(item.mode & stat.S_IXUSR))
    return f"commit {obj.hexsha}", found


def commit_at(settings: Settings, at: datetime) -> tuple[str, datetime] | None:
    """The config history's newest commit made at or before `at` (its commit time), or None (no history, or
    nothing that old). For `restore --at`: RAGFlow's docker/ files as they were kept then."""
    import git  # lazy: GitPython (heavy; needs a git binary): only when config files are kept

    path = git_repo_path(settings)
    if not (path / ".git").is_dir():
        return None
    repo = git.Repo(path)
    try:
        commits = repo.iter_commits("HEAD")
        for commit in commits:
            if commit.committed_datetime <= at:
                return commit.hexsha, commit.committed_datetime
    except (ValueError, git.GitCommandError):  # an empty history has no HEAD
        return None
    return None


# ---------------------------------------------------------------- what is there now


def _target_dir(settings: Settings, target_dir: Path | None) -> Path:
    if target_dir is not None:
        return Path(target_dir).absolute()

    return required_ragflow_dir(settings).absolute()


def _inside(root: Path, path: Path) -> None:
    """The real folder holding `path` is inside root (no symlinked folder leads out)."""
    if not path.parent.resolve().is_relative_to(root.resolve()):
        raise PermanentError(f"{path} lies in a folder that leads outside {root} (a symlink); nothing was restored")


def _current(root: Path, rel: str) -> tuple[bytes, int] | None:
    """(bytes, mode) of the regular file at rel now; None when absent; a symlink counts as absent (it is
    replaced by the file, never followed)."""
    path = root / rel
    _inside(root, path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise PermanentError(f"{path}: a parent of it is a file, not a folder; nothing was restored") from None
    if stat.S_ISLNK(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        raise PermanentError(f"{path} is not a regular file (a folder?); move it away first, nothing was restored")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), stat.S_IMODE(info.st_mode)


def _wanted_mode(item: VersionFile, current: tuple[bytes, int] | None) -> int:
    if item.mode is not None:
        return item.mode & SAFE_MODE_BITS
    mode = current[1] if current else 0o644
    if item.executable:
        mode = mode | ((mode & 0o444) >> 2) | stat.S_IXUSR  # x wherever r is
    else:
        mode &= ~0o111
    return mode & SAFE_MODE_BITS


def _present_config_files(settings: Settings, root: Path) -> list[str]:

    if not root.is_dir():
        return []
    return [item.path for item in collect_files(settings.model_copy(update={"ragflow_dir": root}))]


def _plan(settings: Settings, point: Point | None, record: ComponentRecord | None, commit: str | None,
          files: list[str] | None, target_dir: Path | None, delete_extra: bool) -> _Plan:
    if (point is None) == (commit is None):
        raise PermanentError("give either a backup point (its config_backup.tar.gz) or a commit of the config "
                             "history to restore from, not both and not neither")
    if point is not None:
        source, version = _from_tar(point, record)
    else:
        source, version = _from_commit(settings, commit)  # type: ignore[arg-type]
    root = _target_dir(settings, target_dir)
    plan = _Plan(source, root, version)
    if files is not None:
        chosen = [safe_relpath(name, "files to restore") for name in dict.fromkeys(files)]
        missing = [name for name in chosen if name not in version]
        if missing and not delete_extra:
            raise PermanentError(f"{', '.join(missing)} not in {source} (it holds {', '.join(sorted(version))}); "
                                 "pass delete_extra=True to delete such files instead")
        plan.version = {name: version[name] for name in chosen if name in version}
        extras = [name for name in missing if _current(root, name) is not None]
    else:
        extras = [name for name in _present_config_files(settings, root) if name not in version]
    for name, item in sorted(plan.version.items()):
        current = plan.current[name] = _current(root, name)
        mode = plan.modes[name] = _wanted_mode(item, current)
        if current is not None and current == (item.data, mode):
            plan.unchanged.append(name)
        else:
            plan.write.append(item)
    for name in sorted(extras):
        plan.current[name] = _current(root, name)
        (plan.delete if delete_extra else plan.left_alone).append(name)
    return plan


# ---------------------------------------------------------------- diff


def _text(data: bytes) -> list[str] | None:
    if b"\x00" in data:
        return None
    return data.decode("utf-8", "replace").splitlines()


def _file_diff(name: str, old: tuple[bytes, int] | None, new: tuple[bytes, int] | None) -> list[str]:
    lines = [f"diff a/{name} b/{name}"]
    if old is None and new is None:
        return lines + ["deleted symlink"]
    if old is None:
        lines.append(f"new file mode {0o100000 | new[1]:o}")  # type: ignore[index]
    elif new is None:
        lines.append(f"deleted file mode {0o100000 | old[1]:o}")
    elif old[1] != new[1]:
        lines += [f"old mode {0o100000 | old[1]:o}", f"new mode {0o100000 | new[1]:o}"]
    before, after = (old[0] if old else b""), (new[0] if new else b"")
    if before != after:
        a, b = _text(before), _text(after)
        if a is None or b is None:
            lines.append(f"Binary files a/{name} and b/{name} differ")
        else:
            hunks = difflib.unified_diff(a, b, "/dev/null" if old is None else f"a/{name}",
                                         "/dev/null" if new is None else f"b/{name}", lineterm="")
            for n, line in enumerate(hunks):
                if n < 2 or line.startswith("@@"):  # the two file headers, hunk headers
                    lines.append(line)
                else:
                    lines.append(line[:1] + mask_secrets(line[1:]))
    return lines


def _render(plan: _Plan) -> str:
    out: list[str] = []
    for item in plan.write:
        out += _file_diff(item.path, plan.current.get(item.path), (item.data, plan.modes[item.path]))
    for name in plan.delete:
        out += _file_diff(name, plan.current.get(name), None)
    return "\n".join(out) + ("\n" if out else "")


def diff(settings: Settings, point: Point | None = None, record: ComponentRecord | None = None,
         commit: str | None = None, files: list[str] | None = None, target_dir: Path | None = None,
         delete_extra: bool = False) -> str:
    """A unified diff from the files now to the chosen version ('' when they agree); secret values masked."""
    return _render(_plan(settings, point, record, commit, files, target_dir, delete_extra))


# ---------------------------------------------------------------- writing


def _make_folders(root: Path, folder: Path, created: list[Path]) -> None:
    """Create the missing folders between root and `folder` (0755); the plan checked where they lead."""
    if folder == root or folder.is_dir():
        return
    _make_folders(root, folder.parent, created)
    try:
        folder.mkdir(mode=0o755)
    except FileExistsError:
        raise PermanentError(f"{folder} is in the way (not a folder); nothing was restored") from None
    created.append(folder)


def _stage(root: Path, item: VersionFile, mode: int, current: tuple[bytes, int] | None) -> Path:
    """Write `item` to a temp name beside its final one: written, modes and owner set, fsync'ed, read back."""
    final = root / item.path
    tmp = temp_path(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(item.data)
            out.flush()
            if os.geteuid() == 0 and current is not None:  # a new file is the agent's, never the archive's owner
                os.fchown(out.fileno(), os.lstat(final).st_uid, os.lstat(final).st_gid)
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        if hashlib.sha256(tmp.read_bytes()).hexdigest() != item.sha256:
            raise OSError(errno.EIO, f"{tmp} does not read back as written")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _check_written(plan: _Plan) -> tuple[int, list[str]]:
    found, problems = 0, []
    for name, item in sorted(plan.version.items()):
        now, wanted = _current(plan.root, name), plan.modes[name]
        if now is None or now[0] != item.data:
            problems.append(f"{plan.root / name} does not hold the restored bytes")
        elif now[1] != wanted:
            problems.append(f"{plan.root / name} has mode {now[1]:o}, {wanted:o} expected")
        else:
            found += 1
    problems += [f"{plan.root / name} still exists" for name in plan.delete if (plan.root / name).exists()]
    return found, problems


def restore(settings: Settings, point: Point | None = None, record: ComponentRecord | None = None,
            commit: str | None = None, files: list[str] | None = None, target_dir: Path | None = None,
            dry_run: bool = False, log: logging.Logger | None = None,
            delete_extra: bool = False) -> ConfigRestoreResult:
    """Put the config files of a point (its tar) or a commit back into target_dir (default: ragflow_dir).

    `files`: only these (relative paths). Raises PermanentError, with nothing written, for a source that
    does not check out or a path that would leave target_dir; see the module docstring.
    """
    started = time.monotonic()
    log = log or LOG
    plan = _plan(settings, point, record, commit, files, target_dir, delete_extra)
    result = ConfigRestoreResult(source=plan.source, target_dir=plan.root, dry_run=dry_run,
                                 written=[item.path for item in plan.write], unchanged=list(plan.unchanged),
                                 deleted=list(plan.delete), left_alone=list(plan.left_alone),
                                 expected=len(plan.version))
    if dry_run:
        result.seconds = time.monotonic() - started
        return result
    created: list[Path] = []
    staged: list[tuple[Path, Path]] = []
    try:
        if plan.write and not plan.root.exists():
            plan.root.mkdir(mode=0o700, parents=True)  # a scratch target (drill): private, it holds .env
        for item in plan.write:
            _make_folders(plan.root, (plan.root / item.path).parent, created)
            staged.append((_stage(plan.root, item, plan.modes[item.path], plan.current.get(item.path)),
                           plan.root / item.path))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for folder in reversed(created):
            folder.rmdir()
        raise
    for tmp, final in staged:  # everything is staged and checked: the swap
        os.replace(tmp, final)
    for name in plan.delete:
        (plan.root / name).unlink(missing_ok=True)
    for folder in {final.parent for _, final in staged} | {(plan.root / n).parent for n in plan.delete}:
        fsync_dir(folder)
    result.found, result.problems = _check_written(plan)
    result.seconds = time.monotonic() - started
    log.info("config restore from %s into %s: %d written, %d unchanged, %d deleted, %d left alone; %s",
             plan.source, plan.root, len(result.written), len(result.unchanged), len(result.deleted),
             len(result.left_alone), "verified" if result.ok else "; ".join(result.problems))
    return result


__all__ = ["ConfigRestoreResult", "VersionFile", "diff", "mask_secrets", "restore", "safe_relpath"]
