"""The settings of this process, for code that runs without a CLI in front (Dramatiq workers)."""
from __future__ import annotations

import os
from functools import lru_cache

from core.config import CONFIG_ENV_VAR, Settings, load_settings

_pinned: Settings | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings the CLI loaded at start-up, else those of the file named by RAGFLOW_BACKUP_CONFIG.

    Pinned at start-up so a config file edited (or broken) while the process runs changes nothing in
    it: workers keep the config the agent started with, and the next start reports the error."""
    if _pinned is not None:
        return _pinned
    return load_settings(os.environ.get(CONFIG_ENV_VAR))


def use_config(path: str | os.PathLike[str], loaded: Settings | None = None) -> None:
    """Point this process (and the workers it starts) at a config file, and at its settings as loaded."""
    global _pinned
    os.environ[CONFIG_ENV_VAR] = str(path)
    _pinned = loaded
    settings.cache_clear()
