"""Helpers of the fault matrix: notifications received, fingerprints of existing points, workers and
agents run as real processes so they can be SIGKILLed."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

CLI = str(Path(sys.executable).parent / "ragflow-backup")


# ---------------------------------------------------------------- existing backups stay byte-identical


def fingerprint(root: Path, below: tuple[str, ...] = ("daily", "weekly", "monthly")) -> dict[str, str]:
    """SHA-256 of every file under the given folders of a storage root (the existing points)."""
    found = {}
    for tier in below:
        for path in sorted((Path(root) / tier).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path




def start_cli(config: Path, log: Path, *args: str) -> subprocess.Popen:
    """`ragflow-backup --config CONFIG ARGS...` in a session of its own (so it can be killed whole)."""
    return subprocess.Popen([CLI, "--config", str(config), *args], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 60) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def cli(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "--config", str(config), *args], capture_output=True, text=True, timeout=timeout)


def text_of(path: Path) -> str:
    """A log file's text, or "" while it does not exist yet."""
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def alert_round(settings) -> list[str]:
    """What the agent's alert loop does once: collect health, send every alert; the titles sent."""
    from agent.health import collect
    from agent.mirror_stats import mirror_stats
    from core.notify import Notifier
    from core.points import Storage

    notifier = Notifier(settings.notify, settings.storage_root / "state" / "notify.json")
    report = collect(settings, Storage(settings.storage_root).prepare(), mirror_stats=lambda: mirror_stats(settings))
    sent = []
    for alert in report.alerts(settings):
        if notifier.notify(alert.key, alert.level, alert.title, alert.body):
            sent.append(alert.title)
    return sent
