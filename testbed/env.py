"""Connection settings of the running test bed, as `scripts/testbed up` wrote them to `.testbed/env`."""
from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = ROOT / ".testbed" / "env"


class TestbedMissing(RuntimeError):
    """The test bed's env file is absent: the services were never started here."""


def env_file() -> Path:
    return Path(os.environ.get("RBTB_ENV_FILE", DEFAULT_ENV_FILE))


def load() -> dict[str, str]:
    path = env_file()
    if not path.is_file():
        raise TestbedMissing(f"{path} not found: start the test bed with `make services` (scripts/testbed up)")
    return {key: value or "" for key, value in dotenv_values(path).items()}
