"""restic, wrapped: one configured repository, run as a subprocess with a private environment.

The repository password reaches restic as RESTIC_PASSWORD_FILE or RESTIC_PASSWORD in its environment,
backend credentials likewise (AWS_ACCESS_KEY_ID, ... from the environment or offsite.env_file): never
argv, logs or errors. Failures are mapped to messages a person can act on (a wrong password, no
repository, a stale lock, refused credentials); the permanent ones are not retried.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.atomic import TEMP_MARK, private_dir
from core.component import PermanentError
from core.config import Settings
from core.ragflow_env import read_env_file

log = logging.getLogger("ragflow_backup.offsite")

PASSWORD_ENV = "RAGFLOW_BACKUP_OFFSITE_PASSWORD"
STDERR_KEEP = 4000
EXCLUDES = [".work.lock", ".finalize.lock", f".*{TEMP_MARK}*"]  # lock files and temp names, never data


class OffsiteError(RuntimeError):
    """A transient offsite failure (network, a busy repository): retried with backoff."""


class OffsitePermanent(PermanentError):
    """Retrying will not help (wrong password, no repository, bad configuration)."""


@dataclass
class Snapshot:
    id: str
    time: datetime
    paths: list[str]
    tags: dict[str, list[str]]
    hostname: str

    @property
    def kind(self) -> str:
        return self.tags.get("kind", ["?"])[0]

    @property
    def point(self) -> str | None:
        return self.tags.get("point", [None])[0]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Snapshot:
        tags: dict[str, list[str]] = {}
        for tag in raw.get("tags") or []:
            key, _, value = tag.partition("=")
            tags.setdefault(key, []).append(value)
        when = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", raw["time"]).replace("Z", "+00:00"))
        return cls(raw["id"], when, raw.get("paths") or [], tags, raw.get("hostname", ""))


class Restic:
    """One configured repository; every call runs the restic binary with a private environment."""

    def __init__(self, settings: Settings):
        cfg = settings.offsite
        if not cfg.repository:
            raise OffsitePermanent("no offsite repository configured: set offsite.repository (a folder, s3:..., sftp:...)")
        self.settings = settings
        self.repository = cfg.repository
        self.binary = cfg.restic
        self.state = private_dir(settings.layout.offsite)
        self.password_source = "?"
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        cfg = self.settings.offsite
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        if cfg.env_file:
            if not cfg.env_file.is_file():
                raise OffsitePermanent(f"offsite.env_file {cfg.env_file} does not exist")
            env.update(read_env_file(cfg.env_file))
        env["RESTIC_REPOSITORY"] = self.repository
        env["RESTIC_CACHE_DIR"] = str(private_dir(self.state / "cache"))
        if cfg.password_file:
            if not cfg.password_file.is_file():
                raise OffsitePermanent(f"the offsite password file {cfg.password_file} does not exist "
                                       f"(offsite.password_file); create it with mode 0600")
            env["RESTIC_PASSWORD_FILE"] = str(cfg.password_file)
            self.password_source = str(cfg.password_file)
        elif os.environ.get(PASSWORD_ENV) or os.environ.get("RESTIC_PASSWORD"):
            name = PASSWORD_ENV if os.environ.get(PASSWORD_ENV) else "RESTIC_PASSWORD"
            env["RESTIC_PASSWORD"] = os.environ[name]
            self.password_source = f"${name}"
        else:
            raise OffsitePermanent(f"no offsite repository password: set offsite.password_file (a 0600 file) or "
                                   f"{PASSWORD_ENV} in the environment")
        return env

    # ------------------------------------------------------------ running restic

    def run(self, *args: str, json_out: bool = False, timeout: float | None = None) -> str:
        argv = [self.binary, *args]
        if json_out:
            argv.append("--json")
        try:
            # umask 077: the cache and a folder repository get 0600 files and 0700 folders like the rest.
            done = subprocess.run(argv, env=self.env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  umask=0o077)
        except FileNotFoundError:
            raise OffsitePermanent(f"restic is not installed ({self.binary} not found): `apt-get install restic`") from None
        except subprocess.TimeoutExpired:
            raise OffsiteError(f"restic {args[0]} did not finish within {timeout:.0f}s") from None
        if done.returncode != 0:
            raise self._failure(args[0], done.returncode, done.stderr.decode("utf-8", "replace"))
        return done.stdout.decode("utf-8", "replace")

    def _failure(self, what: str, code: int, stderr: str) -> Exception:
        text = stderr.strip()[-STDERR_KEEP:]
        for secret in (self.env.get("RESTIC_PASSWORD"), self.env.get("AWS_SECRET_ACCESS_KEY")):
            if secret:
                text = text.replace(secret, "***")
        where = f"offsite repository {self.repository}"
        if "wrong password" in text or code == 12:
            return OffsitePermanent(f"wrong offsite repository password (from {self.password_source}) for {where}; "
                                    f"it is the password the repository was created with, and nobody can recover it")
        if "Is there a repository at the following location" in text or code == 10:
            return OffsitePermanent(f"no restic repository at {self.repository}: create it with "
                                    f"`ragflow-backup offsite init` (or check offsite.repository); restic said: "
                                    f"{_last_lines(text)}")
        if "already locked" in text or code == 11:
            return OffsiteError(f"{where} is locked by another restic process ({_last_lines(text)}); if no other "
                                f"restic runs (a stale lock from a killed one), remove it with `restic unlock` "
                                f"(RESTIC_REPOSITORY and the password set)")
        if "Access Denied" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
            return OffsitePermanent(f"the storage of {where} refused our credentials (AWS_ACCESS_KEY_ID / "
                                    f"AWS_SECRET_ACCESS_KEY in the environment or offsite.env_file): {_last_lines(text)}")
        return OffsiteError(f"restic {what} failed on {where} (exit {code}): {_last_lines(text)}")

    # ------------------------------------------------------------ repository

    def exists(self) -> bool:
        try:
            self.run("cat", "config")
        except OffsitePermanent as exc:
            if "no restic repository" in str(exc):
                return False
            raise
        return True

    def init(self) -> bool:
        """Create the repository if missing; True if it was created."""
        if self.exists():
            return False
        if not self.repository.startswith(("s3:", "sftp:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:")):
            private_dir(Path(self.repository).parent)
        self.run("init")
        return True

    def snapshots(self, kind: str | None = None) -> list[Snapshot]:
        args = ["snapshots"] + (["--tag", f"kind={kind}"] if kind else [])
        raw = json.loads(self.run(*args, json_out=True) or "[]") or []
        return sorted((Snapshot.from_json(item) for item in raw), key=lambda s: s.time)

    def stats(self) -> dict[str, Any]:
        """Bytes the repository stores (compressed, deduplicated, encrypted)."""
        return json.loads(self.run("stats", "--mode", "raw-data", json_out=True))

    def clear_stale_locks(self) -> int:
        """Remove the locks a killed restic of ours left behind, which would block every later prune and
        check. Only when every lock in the repository is stale by restic's own rule (this host and a pid
        that is gone, or not refreshed for 30 minutes): a live one, here or on another host, is left alone
        and the command that needs the repository reports whose it is. Callers hold `serialised`, so no
        restic of ours runs meanwhile. Returns the number of locks removed."""
        ids = self.run("list", "locks", "--no-lock").split()
        if not ids:
            return 0
        locks = []
        for lock_id in ids:
            try:
                locks.append(json.loads(self.run("cat", "lock", lock_id, "--no-lock")))
            except (OffsiteError, ValueError):
                return 0  # gone meanwhile or unreadable: leave it to restic's own message
        if not all(_stale(lock) for lock in locks):
            return 0
        self.run("unlock", "--remove-all")
        log.warning("removed %d stale lock(s) from %s left by killed restic processes: %s", len(locks),
                    self.repository, ", ".join(f"pid {lock.get('pid')} on {lock.get('hostname')}" for lock in locks))
        return len(locks)

    def check(self, read_data_subset: str | None = None) -> str:
        self.clear_stale_locks()
        args = ["check"] + ([f"--read-data-subset={read_data_subset}"] if read_data_subset else [])
        return self.run(*args)

    def backup(self, folder: Path, tags: dict[str, list[str] | str], when: datetime | None = None) -> str:
        self.clear_stale_locks()
        args = ["backup", str(folder), "--host", host_name(self.settings)]
        for key, values in tags.items():
            for value in [values] if isinstance(values, str) else values:
                args += ["--tag", f"{key}={value}"]
        for pattern in EXCLUDES:
            args += ["--exclude", pattern]
        if when is not None:
            args += ["--time", when.astimezone().strftime("%Y-%m-%d %H:%M:%S")]
        out = self.run(*args, json_out=True)
        summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line]
        return summary[-1].get("snapshot_id", "") if summary else ""

    def forget(self, kind: str, daily: int, weekly: int, monthly: int, keep_tags: tuple[str, ...] = ()) -> str:
        """Apply the policy to one kind of snapshot; a snapshot carrying any of `keep_tags` is kept whatever its age."""
        self.clear_stale_locks()
        keep = [arg for tag in keep_tags for arg in ("--keep-tag", tag)]
        return self.run("forget", "--tag", f"kind={kind}", "--group-by", "host", "--keep-daily", str(daily),
                        "--keep-weekly", str(weekly), "--keep-monthly", str(monthly), *keep, "--prune")

    def retag(self, snapshot: Snapshot, add: list[str], remove: list[str]) -> None:
        """Add and remove tags of a snapshot (restic rewrites it under a new id; its data stays)."""
        args = [arg for tag in remove for arg in ("--remove", tag)] + [arg for tag in add for arg in ("--add", tag)]
        if args:
            self.clear_stale_locks()
            self.run("tag", *args, snapshot.id)

    def restore(self, snapshot: Snapshot, target: Path) -> Path:
        """Restore a snapshot into `target`; return the folder its backed-up path became there
        (restic 0.14 recreates the absolute path under the target)."""
        self.run("restore", snapshot.id, "--target", str(target))
        return target / snapshot.paths[0].lstrip("/")


STALE_LOCK_SECONDS = 30 * 60  # restic refreshes a live lock every 5 minutes


def _stale(lock: dict[str, Any]) -> bool:

    try:
        created = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", str(lock["time"])).replace("Z", "+00:00"))
        if time.time() - created.timestamp() > STALE_LOCK_SECONDS:
            return True
    except (KeyError, ValueError):
        return False
    if lock.get("hostname") != socket.gethostname():
        return False  # another machine's process: we cannot tell whether it still runs
    try:
        os.kill(int(lock.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def host_name(settings: Settings) -> str:

    return settings.offsite.host or socket.gethostname()


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "no message"
