"""Reading RAGFlow's own `docker/.env`, where its credentials and ports live."""
from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values


def read_ragflow_env(ragflow_dir: Path) -> dict[str, str]:
    """Return the key/values of `<ragflow_dir>/.env`, or {} when there is no such file."""
    path = Path(ragflow_dir) / ".env"
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines in the .env style (offsite.env_file: the backend's credentials)."""
    return {key: value for key, value in dotenv_values(Path(path)).items() if value is not None}
