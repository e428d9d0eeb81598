"""Pre-flight checks: is each configured service reachable, and is our storage usable?

Each check returns a Check with what was found and, when something is wrong, how to fix it.
"""
from __future__ import annotations

import os
import shutil

import redis

from actors.actions.offsite import OffsiteError, OffsitePermanent, Restic, search_repo_problem
from actors.actions.offsite_leftovers import leftover_checks
from actors.components import COMPONENTS
from core.component import Check, PermanentError, failed_check
from core.config import Settings
from core.encryption import recipient_args


def check_storage(settings: Settings) -> Check:
    root = settings.storage_root
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), None)
    if probe is None or not os.access(probe, os.W_OK | os.X_OK):
        return Check("storage", "fail", f"{root} is not writable by uid {os.getuid()}",
                     f"create it and give this user write access: mkdir -p {root} && chown $(id -u) {root}")
    usage = shutil.disk_usage(probe)
    used = 1 - usage.free / usage.total
    detail = f"{root}: {usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB ({used:.0%} used)"
    if used > 0.8:
        return Check("storage", "warn", detail, "free space or move storage_root: backups need room to grow")
    return Check("storage", "ok", detail)


def eviction_risk(policy: str) -> str:
    """What a Redis maxmemory-policy can evict, judged by its effect and not its name: '' when it cannot
    drop a queued task (our messages and RAGFlow's task stream carry no TTL)."""
    if policy.startswith("allkeys-"):
        return "it can evict any key, queued tasks included, under memory pressure"
    if policy.startswith("volatile-") or policy == "noeviction":
        return ""  # volatile-*: only keys with a TTL; noeviction: none (writes fail instead)
    return "a policy this check does not know: make sure it never evicts keys without a TTL"


def check_broker(settings: Settings) -> Check:

    try:
        client = redis.Redis.from_url(settings.broker.url.get_secret_value(), socket_connect_timeout=5)
        info = client.info("server")
        version = info.get("valkey_version") or info["redis_version"]
        server = "Valkey" if "valkey_version" in info else "Redis"
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its cause
        return failed_check("broker (Redis)", exc, "check broker.url: host, port, password and DB")
    detail = f"{server} {version}, maxmemory-policy {policy}"
    risk = eviction_risk(policy)
    if risk:
        return Check("broker (Redis)", "warn", f"{detail}: {risk}",
                     "use a separate Redis for broker.url, or a volatile-* policy (RAGFlow's own default, "
                     "volatile-lru) or noeviction on this one")
    if policy.startswith("volatile-"):
        detail += " (evicts only keys with a TTL; queued tasks have none)"
    return Check("broker (Redis)", "ok", detail)


def check_offsite(settings: Settings) -> Check:
    if not settings.offsite.enabled:
        return Check("offsite", "off", "optional; set offsite.enabled and offsite.repository for a second copy")

    try:
        restic = Restic(settings)
        found = restic.exists()
    except (OffsiteError, OffsitePermanent) as exc:
        return Check("offsite", "fail", str(exc).splitlines()[0],
                     "check offsite.repository, offsite.password_file (or RAGFLOW_BACKUP_OFFSITE_PASSWORD) and "
                     "the backend's credentials")
    if not found:
        return Check("offsite", "warn", f"no repository at {settings.offsite.repository} yet",
                     "`ragflow-backup offsite init` (the first copy also creates it)")
    problem = search_repo_problem(settings) if settings.search.enabled else None
    if problem:  # the chunks would not travel: a move from the offsite copy alone could not bring them back
        return Check("offsite", "warn", f"restic repository {settings.offsite.repository}, but the search snapshot "
                                        f"repository is not copied there: {problem}",
                     "see README, \"The offsite copy\" (search chunks)")
    return Check("offsite", "ok", f"restic repository {settings.offsite.repository} (password from "
                                  f"{restic.password_source})")


def check_encryption(settings: Settings) -> Check:
    if not settings.encryption.enabled:
        return Check("encryption", "off", "optional; encryption.recipients encrypts artifacts at rest (age)")

    try:
        recipients = recipient_args(settings)
    except PermanentError as exc:
        return Check("encryption", "fail", str(exc), "list age public keys (age1...) or recipients files")
    if shutil.which("age") is None:
        return Check("encryption", "fail", "the age tool is not installed", "apt-get install age")
    return Check("encryption", "ok", f"{len(recipients) // 2} recipient(s); the identity stays off this machine")


def run_checks(settings: Settings) -> list[Check]:
    """The storage root and the broker, each component's own checks (actors/components.py), offsite, encryption;
    and what killed restores from offsite left on the search server's side, removed (offsite_leftovers.py)."""
    return [check_storage(settings), check_broker(settings),
            *(check for component in COMPONENTS.values() for check in component.checks(settings)),
            check_offsite(settings), check_encryption(settings), *leftover_checks(settings)]
