"""Every path under the storage root, named once: no other module joins names under the root.

    <root>/daily/YYYY-MM-DD[_HHMMSS]/   a point (core/points.py); weekly/, monthly/, safety/ likewise
    <root>/logs/                        backup_history.log, audit.log
    <root>/locks/                       one lock per component, the backup run, restore, offsite, ...
    <root>/state/                       small JSON states: scheduler, notifications, reconcile, last restore, offsite,
                                        interval search snapshots
    <root>/decrypted/                   decrypted copies of encrypted points, swept when stale
    <root>/offsite/                     restic's cache and state, staging for copies and restores
    <root>/foreign/                     copies of another installation's mirror index (core/source_root.py)
    <root>/minio_mirror/                the MinIO mirror (minio.mirror_dir)
    <root>/config_repo/                 the config files' git history (config_files.git_repo)
    <root>/mysql_binlog/                MySQL's binary log as archived (actors/binlog/), with its index
    <root>/search_intervals/<snapshot>/ search snapshots between points, each with its record (actors/search/interval.py)

Folders are created where they are used, through core/safe_paths.py (never through a symlink).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.atomic import private_dir
from core.safe_paths import private_folder

TIER_NAMES = ("daily", "weekly", "monthly")
SAFETY_NAME = "safety"
LOGS = "logs"
LOCKS = "locks"
STATE = "state"
DECRYPTED = "decrypted"
OFFSITE = "offsite"
FROZEN_MIRROR = "minio_mirror"  # offsite/staging/minio_mirror: what restic sees as the mirror
OFFSITE_RESTORE = "restore-"  # offsite/restore-<token>: one fetch
FOREIGN = "foreign"  # foreign/<token>/: a restore from another installation's storage root
MIRROR_DIR = "minio_mirror"  # minio.mirror_dir's default
CONFIG_REPO = "config_repo"  # config_files.git_repo's default
BINLOG_ARCHIVE = "mysql_binlog"  # the binlog archive (core/pitr.py)
SEARCH_INTERVALS = "search_intervals"  # interval search snapshots' records (actors/search/interval.py)
# Offsite: the interval records travel inside the search repository's copy (kind=search_repo) in this folder
# (a name no snapshot repository uses), so a copy's records always name snapshots that copy holds.
SEARCH_INTERVALS_IN_REPO_COPY = "ragflow-backup-search-intervals"


class Layout:
    """The paths of one storage root. `mirror_dir` and `config_repo` are the config's names for them."""

    def __init__(self, root: Path | str, mirror_dir: str = MIRROR_DIR, config_repo: str = CONFIG_REPO):
        self.root = Path(root)
        self.mirror_dir = mirror_dir
        self.config_repo_name = config_repo

    @classmethod
    def of(cls, settings: Any) -> Layout:
        """The layout a config describes (storage_root, minio.mirror_dir, config_files.git_repo)."""
        return cls(settings.storage_root, settings.minio.mirror_dir, settings.config_files.git_repo)

    # ------------------------------------------------------------ folders

    def folder(self, name: str) -> Path:
        """A top-level folder by its name: a tier, logs, locks, state, decrypted or offsite."""
        return self.root / name

    def point_folder(self, tier: str, name: str) -> Path:
        return self.root / tier / name

    def private(self, *parts: str) -> Path:
        """root/parts..., each missing folder created 0700, never through a symlink (core/safe_paths.py)."""
        return private_folder(self.root, parts)

    def offsite_staging(self) -> Path:
        """Where an offsite copy stages the frozen mirror."""
        return self.private(OFFSITE, "staging")

    def offsite_frozen_mirror(self) -> Path:
        """The frozen view of the mirror an offsite copy sends (in the staging folder, made first)."""
        return self.offsite_staging() / FROZEN_MIRROR

    def offsite_frozen_search(self) -> Path:
        """The frozen view of the search snapshot repository an offsite copy sends (in the staging folder)."""
        return self.offsite_staging() / "search_repository"

    def offsite_frozen_binlog(self) -> Path:
        """The frozen view of the binlog archive an offsite copy sends (in the staging folder, made first)."""
        return self.offsite_staging() / BINLOG_ARCHIVE

    def offsite_restore_staging(self, token: str) -> Path:
        """Where one offsite fetch unpacks ('restore-<token>', swept when stale)."""
        return self.private(OFFSITE, f"{OFFSITE_RESTORE}{token}")

    def offsite_restore_lock(self, token: str) -> Path:
        """Held by the offsite fetch into 'restore-<token>' while it is there: a killed one's is free
        (actors/actions/offsite_leftovers.py)."""
        return self.private(OFFSITE) / f"{OFFSITE_RESTORE}{token}.lock"

    def foreign_staging(self, token: str) -> Path:
        """Where a restore from another installation's root keeps its copy of that mirror's index."""
        return self.private(FOREIGN, token)

    def decrypted_copy(self, *parts: str) -> Path:
        """A decrypted copy's folder under decrypted/ (swept when stale)."""
        return self.private(DECRYPTED, *parts)

    @property
    def logs(self) -> Path:
        return self.root / LOGS

    @property
    def locks(self) -> Path:
        return self.root / LOCKS

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def decrypted(self) -> Path:
        return self.root / DECRYPTED

    @property
    def offsite(self) -> Path:
        return self.root / OFFSITE

    @property
    def mirror(self) -> Path:
        return self.root / self.mirror_dir

    @property
    def config_repo(self) -> Path:
        return self.root / self.config_repo_name

    @property
    def binlog_archive(self) -> Path:
        """MySQL's binary log as archived: the server's files under their own names, and the index."""
        return self.root / BINLOG_ARCHIVE

    @property
    def search_intervals(self) -> Path:
        return self.root / SEARCH_INTERVALS

    # ------------------------------------------------------------ files

    def lock(self, name: str) -> Path:
        """A lock file in locks/ ('backup-run.lock', 'restore.lock', ...)."""
        return self.locks / name

    def made_lock(self, name: str) -> Path:
        """A lock file in locks/, the folder made (0700) first."""
        private_dir(self.locks)
        return self.lock(name)

    def made_state_file(self, name: str) -> Path:
        """A state file in state/, the folder made (0700) first."""
        private_dir(self.state)
        return self.state_file(name)

    def component_lock(self, component: str) -> Path:
        return self.locks / f"{component}.lock"

    def state_file(self, name: str) -> Path:
        """A state file in state/ ('scheduler.json', 'notify.json', ...)."""
        return self.state / name

    @property
    def notify_state(self) -> Path:
        return self.state_file("notify.json")

    @property
    def scheduler_state(self) -> Path:
        return self.state_file("scheduler.json")

    @property
    def reconcile_state(self) -> Path:
        return self.state_file("reconcile.json")

    @property
    def history_log(self) -> Path:
        return self.logs / "backup_history.log"

    def log(self, name: str) -> Path:
        return self.logs / name
