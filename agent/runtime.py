"""The settings of this process, for code that runs without a CLI in front (Dramatiq workers)."""
from __future__ import annotations

import os
from functools import lru_cache

from agent.config import CONFIG_ENV_VAR, Settings, load_settings


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings from the file named by RAGFLOW_BACKUP_CONFIG (the CLI sets it from --config)."""
    return load_settings(os.environ.get(CONFIG_ENV_VAR))


def use_config(path: str | os.PathLike[str]) -> None:
    """Point this process (and the workers it starts) at a config file."""
    os.environ[CONFIG_ENV_VAR] = str(path)
    settings.cache_clear()
