"""Config: RAGFlow's docker/ files (.env, compose files, nginx, templates) archived and versioned in Git.

Which files: those core/ragflow_folder.py derives from RAGFlow's compose files (what they mount, env
files, scripts), plus config_files.patterns as additions; the file watcher uses the same list.

Each backup writes `config_backup.tar.gz` (paths relative to ragflow_dir, modes kept, owner names
cleared) and commits the same files into a Git repository under the storage root, so that every change
to `.env` or a compose file has a dated commit. `commit_config` is also what the file watcher calls.

File names found in ragflow_dir are untrusted: nothing whose real path leaves ragflow_dir is read,
and nothing is written outside the repository's work tree (nor into its .git).
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import io
import logging
import os
import stat
import tarfile
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path, PurePosixPath

from core import locks
from core.atomic import DIR_MODE, FILE_MODE, atomic_file, private_dir, write_bytes_atomic
from core.checks import CorruptArtifact, check_gzip, verify_artifacts
from core.component import ComponentResult, PermanentError
from core.config import Settings
from core.manifest import Artifact, ComponentRecord
from core.points import Point
from core.ragflow_folder import MAX_FILE_BYTES, kept_patterns

NAME = "config"
ARTIFACT = "config_backup.tar.gz"
# Editor leftovers: vim swap files, emacs backups and lock links, vim's write test file.
EDITOR_TEMP = ("*.swp", "*.swo", "*.swx", "*~", ".#*", "#*#", "4913")
GIT_USER = ("ragflow-backup", "ragflow-backup@localhost")
MESSAGE_FILES = 10  # name at most this many files in a commit message


@dataclass(frozen=True)
class ConfigFile:
    path: str  # relative to ragflow_dir, POSIX separators
    data: bytes
    mode: int  # permission bits
    mtime: float
    uid: int
    gid: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def required_ragflow_dir(settings: Settings) -> Path:
    folder = settings.ragflow_dir
    if folder is None:
        raise PermanentError("ragflow_dir is not set: set `ragflow_dir` in the config to RAGFlow's docker/ folder "
                             "(the one holding .env and docker-compose.yml)")
    if not folder.is_dir():
        raise PermanentError(f"ragflow_dir {folder} is not a folder: fix `ragflow_dir` in the config to point at "
                             f"RAGFlow's docker/ folder (the one holding .env and docker-compose.yml)")
    return folder


def _is_editor_temp(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EDITOR_TEMP)


def collect_files(settings: Settings, log: logging.Logger | None = None) -> list[ConfigFile]:
    """Read the files to keep (derived list + patterns), sorted by path; skip editor temp files and anything escaping."""
    root = required_ragflow_dir(settings)
    real_root = root.resolve()
    found: dict[str, ConfigFile] = {}
    for pattern in settings.config_files.patterns:
        if PurePosixPath(pattern).is_absolute():
            raise PermanentError(f"config_files.patterns: {pattern!r} must be relative to ragflow_dir ({root})")
    for pattern in kept_patterns(root, settings.config_files.patterns):
        for match in sorted(root.glob(pattern)):
            rel = match.relative_to(root).as_posix()
            parts = PurePosixPath(rel).parts
            if rel in found or _is_editor_temp(match.name):
                continue
            # Paths stay inside the archive/work tree; '.git' would write into the repository itself.
            if ".." in parts or ".git" in parts:
                if log:
                    log.warning("config: skipped %s (not a plain path inside ragflow_dir)", rel)
                continue
            real = match.resolve()
            if not real.is_relative_to(real_root):
                if log:
                    log.warning("config: skipped %s: it leads outside ragflow_dir (to %s)", rel, real)
                continue
            item = _read_regular(real, rel, log)
            if item is not None:
                found[rel] = item
    return [found[rel] for rel in sorted(found)]


def _read_regular(real: Path, rel: str, log: logging.Logger | None = None) -> ConfigFile | None:
    """Read a regular file (already resolved, so no symlink is followed further); None for anything else."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:  # removed since the glob
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a symlink since we resolved it
            return None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # folders, fifos, devices
        os.close(fd)
        return None
    if info.st_size > MAX_FILE_BYTES:  # e.g. a model or a database in a folder mounted read-only
        os.close(fd)
        if log:
            log.warning("config: skipped %s: %d bytes is data, not configuration (limit %d)", rel, info.st_size,
                        MAX_FILE_BYTES)
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    return ConfigFile(rel, data, stat.S_IMODE(info.st_mode), info.st_mtime, info.st_uid, info.st_gid)


# ---------------------------------------------------------------- the daily tar


def _write_tar(out, files: list[ConfigFile]) -> None:
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as archive:
        for item in files:
            info = tarfile.TarInfo(item.path)
            info.size = len(item.data)
            info.mode = item.mode
            info.mtime = int(item.mtime)
            info.uid, info.gid = item.uid, item.gid
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(item.data))


def _tar_members(path: Path) -> dict[str, str]:
    """Member path -> SHA-256 of its content, for every regular member."""
    members: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isfile() else None
                members[member.name] = hashlib.sha256(extracted.read()).hexdigest() if extracted else "(not a file)"
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise CorruptArtifact(f"{path.name}: not a sound tar.gz ({exc})") from None
    return members


def _check_tar(files: list[ConfigFile]):
    expected = {item.path: item.sha256 for item in files}

    def check(path: Path) -> None:
        check_gzip(path)  # the whole stream, CRC included
        if _tar_members(path) != expected:
            raise CorruptArtifact(f"{path.name}: members differ from the files we archived")
    return check


# ---------------------------------------------------------------- the Git history


def git_repo_path(settings: Settings) -> Path:
    name = PurePosixPath(settings.config_files.git_repo)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise PermanentError(f"config_files.git_repo {str(name)!r} must be a folder name under the storage root")
    return settings.layout.config_repo


def _open_repo(path: Path):
    import git  # lazy: GitPython (heavy; needs a git binary): only when config files are kept

    if (path / ".git").is_dir():
        return git.Repo(path)
    private_dir(path)
    repo = git.Repo.init(path)
    with repo.config_writer() as config:
        # Commits must work without a global git config; the repository holds .env, so owner-only.
        config.set_value("user", "name", GIT_USER[0])
        config.set_value("user", "email", GIT_USER[1])
        config.set_value("core", "sharedRepository", "0600")
        config.set_value("commit", "gpgSign", "false")
    return repo


def _make_private(path: Path) -> None:
    """Nothing in the repository for group or others (.env copies hold secrets): folders 0700, files <= 0700."""
    for folder, _, names in os.walk(path):
        os.chmod(folder, DIR_MODE)
        for name in names:
            target = Path(folder, name)
            if not target.is_symlink():
                os.chmod(target, stat.S_IMODE(target.stat().st_mode) & 0o700)


def _sync_work_tree(work: Path, files: list[ConfigFile]) -> None:
    """Make the work tree hold exactly `files`: write what differs, delete what is gone."""
    wanted = {item.path: item for item in files}
    for item in files:
        target = work / item.path
        private_dir(target.parent)
        if target.is_symlink() or not target.is_file() or target.read_bytes() != item.data:
            target.unlink(missing_ok=True)
            write_bytes_atomic(target, item.data)
        # Git tracks only the execute bit; keep it so entrypoint.sh stays executable in the history.
        os.chmod(target, 0o700 if item.mode & stat.S_IXUSR else FILE_MODE)
    folders = []
    for folder, dirs, names in os.walk(work):
        here = Path(folder)
        if here == work:
            dirs[:] = [d for d in dirs if d != ".git"]
        else:
            folders.append(here)
        for name in names:
            if (here / name).relative_to(work).as_posix() not in wanted:
                (here / name).unlink()
    for here in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        if not any(here.iterdir()):
            here.rmdir()


def _message(changes: list[tuple[str, str]], suffix: str) -> str:
    """'config: .env, nginx/ragflow.conf changed; old.yml removed (backup 2026-11-24)'."""
    words = {"A": "added", "M": "changed", "D": "removed", "T": "changed"}
    groups: dict[str, list[str]] = {}
    for status, path in changes:
        groups.setdefault(words.get(status[:1], "changed"), []).append(path)
    parts = []
    named = 0
    for word in ("changed", "added", "removed"):
        paths = groups.get(word, [])
        shown = paths[: max(MESSAGE_FILES - named, 0)]
        named += len(shown)
        if shown:
            more = f" and {len(paths) - len(shown)} more" if len(paths) > len(shown) else ""
            parts.append(f"{', '.join(shown)}{more} {word}")
        elif paths:
            parts.append(f"{len(paths)} more {word}")
    summary = f"config: {'; '.join(parts)}"
    return f"{summary} ({suffix})" if suffix else summary


def _commit(settings: Settings, files: list[ConfigFile], message_suffix: str) -> tuple[str | None, str]:
    """Commit `files` as the whole tracked set; return (new commit or None, HEAD)."""
    path = git_repo_path(settings)
    private_dir(settings.storage_root)
    lock = settings.layout.made_lock("config_git.lock")
    # The daily backup and the file watcher may commit at the same moment; git's index.lock would trip.
    with locks.exclusive(lock, "a config commit", wait=True):
        repo = _open_repo(path)
        _sync_work_tree(path, files)
        repo.git.add("-A")
        if repo.head.is_valid():
            raw = repo.git.diff("--cached", "--name-status", "--no-renames", "-z")
            fields = [f for f in raw.split("\0") if f]
            changes = list(zip(fields[0::2], fields[1::2]))
        else:  # no commit yet: everything staged is new
            changes = [("A", item.path) for item in files]
        new = None
        if changes:
            repo.git.commit("-q", "--no-verify", "-m", _message(changes, message_suffix))
            new = repo.head.commit.hexsha
        _make_private(path)
        head = repo.head.commit.hexsha if repo.head.is_valid() else ""
    return new, head


def commit_config(settings: Settings, message_suffix: str) -> str | None:
    """Commit the current config files into the Git repository; the new commit's sha, None when unchanged."""
    new, _ = _commit(settings, collect_files(settings), message_suffix)
    return new


def history(settings: Settings, limit: int = 20) -> list[dict]:
    """The newest `limit` commits: sha, time (UTC ISO), message, files touched."""
    path = git_repo_path(settings)
    if not (path / ".git").is_dir():
        return []
    import git  # lazy: GitPython (heavy; needs a git binary): only when config files are kept

    repo = git.Repo(path)
    if not repo.head.is_valid():
        return []
    return [
        {
            "sha": commit.hexsha,
            "time": commit.committed_datetime.astimezone(timezone.utc).isoformat(),
            "message": commit.message.strip(),
            "files": sorted(commit.stats.files),
        }
        for commit in repo.iter_commits(max_count=limit)
    ]


# ---------------------------------------------------------------- the component face


def backup(settings: Settings, point: Point, log: logging.Logger) -> ComponentResult:
    files = collect_files(settings, log)
    if not files:
        raise PermanentError(f"no config file in ragflow_dir {settings.ragflow_dir}: neither compose files, .env nor "
                             f"a match of config_files.patterns ({', '.join(settings.config_files.patterns)}); "
                             f"is ragflow_dir RAGFlow's docker/ folder?")
    with atomic_file(point.path(ARTIFACT), check=_check_tar(files)) as out:
        _write_tar(out, files)
    written = out.result  # type: ignore[attr-defined]
    new, head = _commit(settings, files, f"backup {point.name}")
    log.info("config: %d files archived; git %s", len(files), f"commit {new[:12]}" if new else "unchanged")
    return ComponentResult(
        artifacts=[Artifact(name=ARTIFACT, bytes=written.bytes, sha256=written.sha256, kind="tar.gz")],
        counts={"files": len(files)},
        details={"files": [{"path": f.path, "bytes": len(f.data), "sha256": f.sha256} for f in files],
                 "git_commit": head},
    )


def verify(settings: Settings, point: Point, record: ComponentRecord) -> list[str]:
    problems = verify_artifacts(point, record)
    if problems:
        return problems
    try:
        members = _tar_members(point.folder / ARTIFACT)
    except CorruptArtifact as exc:
        return [str(exc)]
    expected = {f["path"]: f["sha256"] for f in record.details.get("files", [])}
    if sorted(members) != sorted(expected):
        missing = sorted(set(expected) - set(members))
        extra = sorted(set(members) - set(expected))
        problems.append(f"{ARTIFACT}: members differ from the manifest (missing {missing}, unexpected {extra})")
    for name, digest in sorted(members.items()):
        if name in expected and expected[name] != digest:
            problems.append(f"{ARTIFACT}: {name} does not match its SHA-256 in the manifest")
    if record.counts.get("files") != len(members):
        problems.append(f"{ARTIFACT}: {len(members)} files, the manifest says {record.counts.get('files')}")
    return problems
