"""doctor's checks of Elasticsearch / OpenSearch: reachable, and the repository inside path.repo; interval
snapshots' repository readable here (for the offsite copy)."""
from __future__ import annotations

import os
from pathlib import Path

from core import clients
from core.clients import compose_override
from core.component import Check, failed_check, off_check
from core.config import Settings
from core.ragflow_deployment import read_deployment


def unsupported_reason(settings: Settings) -> str:
    """Why RAGFlow's .env puts the search engine out of our reach ('' when it does not)."""
    found = read_deployment(settings.ragflow_env())
    if found.search_supported:
        return ""
    return (f"DOC_ENGINE={found.doc_engine} is not supported (Elasticsearch and OpenSearch are): re-parse the "
            "documents after a restore to rebuild their chunks")


def check_search(settings: Settings) -> Check:
    cfg = settings.search
    name = cfg.engine
    if not cfg.enabled:
        return off_check(name, unsupported_reason(settings))
    try:
        client = clients.search_client(cfg)
        version = clients.search_server_version(client)
        info = client.nodes.info(node_id="_local", metric="settings")
        body = info.body if hasattr(info, "body") else info
        node_settings = next(iter(body["nodes"].values()))["settings"]
    except Exception as exc:  # noqa: BLE001
        return failed_check(name, exc, f"check search.url ({cfg.url}) and the {name} user/password")
    repo_paths = node_settings.get("path", {}).get("repo") or []
    if isinstance(repo_paths, str):
        repo_paths = [repo_paths]
    if not any(cfg.repository_path.startswith(path.rstrip("/")) for path in repo_paths):
        return Check(name, "fail", f"{version}: path.repo {repo_paths or 'is not set'}; "
                     f"{cfg.repository_path} is outside it", compose_override(cfg.engine))
    return Check(name, "ok", f"{version} at {cfg.url}, path.repo {repo_paths}")


def check_intervals(settings: Settings) -> list[Check]:
    """Interval snapshots on while the agent cannot read search.repository_path: they are taken (the server
    writes them), but the offsite copy of the repository (kind=search_repo) cannot carry them, nor the points'
    snapshots. One warning line then; none otherwise."""
    cfg = settings.search
    if not cfg.enabled or not cfg.snapshot_interval_minutes:
        return []
    path = Path(cfg.repository_path)
    if path.is_dir() and not path.is_symlink() and os.access(path, os.R_OK | os.X_OK):
        return [Check("search intervals", "ok", f"every {cfg.snapshot_interval_minutes} min into {path}, readable "
                      "here (the offsite copy carries them)")]
    why = "is not a folder on this machine" if not path.is_dir() or path.is_symlink() else \
        f"is not readable by the agent (uid {os.getuid()})"
    return [Check("search intervals", "warn",
                  f"interval snapshots are on (every {cfg.snapshot_interval_minutes} min) but search.repository_path "
                  f"{path} {why}: neither they nor the points' snapshots can go offsite",
                  "mount the search server's repository folder at the same path where the agent runs and give the "
                  "agent read access (e.g. a group both share), or set search.snapshot_interval_minutes: 0")]
