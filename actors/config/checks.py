"""doctor's check of RAGFlow's docker/ folder: what the daily tar keeps and the watcher watches."""
from __future__ import annotations

from core.component import Check
from core.config import Settings
from core.ragflow_folder import kept_files


def check_config_files(settings: Settings) -> Check:
    """What the daily tar keeps and the watcher watches: the list derived from RAGFlow's compose files."""
    folder = settings.ragflow_dir
    if not settings.config_files.enabled:
        return Check("config files", "off", "disabled in the config")
    if folder is None:
        return Check("config files", "off", "ragflow_dir is not set: RAGFlow's docker/ files are not kept",
                     "set ragflow_dir to RAGFlow's docker/ folder to keep .env, compose files and what they mount")
    if not folder.is_dir():
        return Check("config files", "fail", f"ragflow_dir {folder} is not a folder",
                     "set ragflow_dir to RAGFlow's docker/ folder (the one holding .env and docker-compose.yml)")
    files = kept_files(folder, settings.config_files.patterns)
    if not files:
        return Check("config files", "fail", f"nothing to keep in {folder}",
                     "is ragflow_dir RAGFlow's docker/ folder? It holds .env and docker-compose.yml")
    how = "watched and archived daily" if settings.watch.enabled else "archived daily (watch.enabled is off)"
    return Check("config files", "ok", f"{len(files)} files {how} in {folder}: {', '.join(files)}")
