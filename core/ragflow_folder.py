"""What to keep of RAGFlow's docker/ folder, derived from the folder itself rather than a fixed list.

RAGFlow's compose files say which files its containers read: every volume whose host side is a relative
path (`./init.sql:/data/application/init.sql`, `./oceanbase/init.d:/root/boot/init.d`), also in the
services of profiles that are not running and in mount lines RAGFlow ships commented out (`# -
./nginx/ragflow.conf:...`). Kept, as Path.glob patterns relative to the folder (the syntax of
config_files.patterns, so the daily tar and the watcher share one list):

- the compose files (`docker-compose*.yml`, and whatever they `include:`) and the env files (`.env`,
  `.env.*` such as `.env.single-bucket-example`, and every `env_file:`);
- each mounted file; for a file inside a subfolder, that subfolder's files too: nginx/ holds the
  `ragflow.conf.python|golang|hybrid` that entrypoint.sh copies over the mounted `ragflow.conf`;
- each mounted folder's files when the mount is read-only or is an init-script folder (`init.d`,
  `docker-entrypoint-initdb.d`); other folder mounts hold data or logs (`./ragflow-logs`,
  `./oceanbase/data`) and are left out, as is a mount of the whole folder (our own override's `./`);
- the shell scripts next to the compose files (`launch_backend_service.sh`, `migration.sh`): operators
  edit them, though no container mounts them.

A file over MAX_FILE_BYTES is data, whatever selected it, and is left out.

The compose files are RAGFlow's (or the operator's) and may be broken or odd: a file that does not parse
as YAML adds only its commented mount lines, and no derived path may leave the folder ('..', absolute).
"""
from __future__ import annotations

import glob
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import yaml

log = logging.getLogger("ragflow_backup.ragflow_folder")

COMPOSE_FILES = ("docker-compose*.yml", "docker-compose*.yaml", "compose.yml", "compose.yaml")
ENV_FILES = (".env", ".env.*")
SCRIPTS = ("*.sh",)
# A larger file is data (a model, a database in a mounted folder), never kept: configuration is small.
MAX_FILE_BYTES = 4 * 2**20
# A folder mounted here holds init scripts (SQL, shell), which an operator writes; anything else is data.
INIT_FOLDER = re.compile(r"(^|/)([^/]*init\.d|docker-entrypoint-init[^/]*)/?$")
# '  # - ./nginx/ragflow.conf:/etc/nginx/conf.d/ragflow.conf' in a compose file: a mount left for the operator.
COMMENTED_MOUNT = re.compile(r"^\s*#\s*-\s*[\"']?(\.{1,2}/[^:\s\"']*):([^\s\"']+)")


def compose_files(folder: Path) -> list[str]:
    """The compose files at the top of `folder` and those they include, as relative POSIX paths."""
    found: list[str] = []
    pending = sorted({p.name for pattern in COMPOSE_FILES for p in folder.glob(pattern) if p.is_file()})
    while pending:
        rel = pending.pop(0)
        if rel in found:
            continue
        found.append(rel)
        for item in _as_list((_load(folder, rel) or {}).get("include")):
            path = item.get("path") if isinstance(item, dict) else item
            for one in _as_list(path):
                inner = _inside(rel, one)
                if inner and (folder / inner).is_file():
                    pending.append(inner)
    return found


def kept_patterns(folder: Path, configured: Iterable[str] = ()) -> list[str]:
    """Path.glob patterns for what to keep of RAGFlow's folder: derived ones first, then `configured`."""
    folder = Path(folder)
    patterns: list[str] = [*COMPOSE_FILES, *ENV_FILES, *SCRIPTS]
    for rel in compose_files(folder):
        patterns.append(glob.escape(rel))
        for kind, path, target, read_only in _references(folder, rel):
            patterns.extend(_patterns_for(folder, kind, path, target, read_only))
    patterns.extend(configured)
    return list(dict.fromkeys(patterns))


def kept_files(folder: Path, configured: Iterable[str] = ()) -> list[str]:
    """The regular files the patterns select now, sorted (what doctor shows as watched)."""
    found = set()
    for pattern in kept_patterns(folder, configured):
        for match in folder.glob(pattern):
            rel = match.relative_to(folder)
            if match.is_file() and ".git" not in rel.parts and match.stat().st_size <= MAX_FILE_BYTES:
                found.add(rel.as_posix())
    return sorted(found)


def is_compose_file(rel: str) -> bool:
    """Would a change of this relative path change the derived list (a compose file at the top)?"""
    return "/" not in rel and any(PurePosixPath(rel).match(pattern) for pattern in COMPOSE_FILES)


# ---------------------------------------------------------------- reading the compose files


def _load(folder: Path, rel: str) -> dict | None:
    try:
        data = yaml.safe_load((folder / rel).read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError) as exc:
        log.warning("config: %s does not parse as YAML (%s); only its commented mount lines are used",
                    rel, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    return data if isinstance(data, dict) else None


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _inside(compose_rel: str, raw) -> str | None:
    """A host path of `compose_rel` as a relative POSIX path in the folder; None if it leaves it or is not one."""
    if not isinstance(raw, str) or not raw or raw.startswith(("/", "~", "$")):
        return None
    joined = PurePosixPath(compose_rel).parent / raw
    parts = [p for p in joined.parts if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts) or "."


def _references(folder: Path, rel: str) -> Iterator[tuple[str, str, str, bool]]:
    """(kind, host path, container path, read-only) for each env file and relative bind mount of `rel`."""
    data = _load(folder, rel) or {}
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    for service in services.values():
        if not isinstance(service, dict):
            continue
        for env_file in _as_list(service.get("env_file")):
            path = _inside(rel, env_file.get("path") if isinstance(env_file, dict) else env_file)
            if path:
                yield "env", path, "", True
        for volume in _as_list(service.get("volumes")):
            mount = _bind_mount(volume)
            if mount:
                path = _inside(rel, mount[0])
                if path:
                    yield "mount", path, mount[1], mount[2]
    try:
        text = (folder / rel).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        match = COMMENTED_MOUNT.match(line)
        if match:
            path = _inside(rel, match.group(1))
            target, _, mode = match.group(2).partition(":")
            if path:
                yield "mount", path, target, "ro" in mode.split(",")


def _bind_mount(volume) -> tuple[str, str, bool] | None:
    """(source, target, read-only) of a bind mount with a relative source, short or long syntax."""
    if isinstance(volume, str):
        fields = volume.split(":")
        if len(fields) < 2 or not fields[0].startswith("."):
            return None  # a named volume, or an absolute host path (not in RAGFlow's folder)
        return fields[0], fields[1], len(fields) > 2 and "ro" in fields[2].split(",")
    if isinstance(volume, dict) and volume.get("type", "bind") == "bind":
        source = volume.get("source")
        if isinstance(source, str) and source.startswith("."):
            return source, str(volume.get("target", "")), bool(volume.get("read_only"))
    return None


def _patterns_for(folder: Path, kind: str, path: str, target: str, read_only: bool) -> list[str]:
    if path == ".":
        return []  # the whole folder (data and logs included): its files are chosen one by one above
    host = folder / path
    parent = PurePosixPath(path).parent
    if kind == "env":
        return [glob.escape(path)]
    if host.is_dir():
        if read_only or INIT_FOLDER.search(path) or INIT_FOLDER.search(target):
            return [f"{glob.escape(path)}/**/*"]
        return []
    found = [glob.escape(path)]  # also when missing now: the watcher sees it once it is created
    if str(parent) != "." and (folder / parent).is_dir():
        found.append(f"{glob.escape(str(parent))}/*")
    return found
