"""The mirror's settings against the test bed's MinIO, and its store, each test in a folder of its own
(a test file that mirrors from a private MinIO overrides `settings`; `store` follows it)."""
from __future__ import annotations

import pytest

from core.config import Settings
from core.mirror_store import MirrorStore
from testbed import settings as testbed_settings


@pytest.fixture
def settings(tmp_path, testbed_env) -> Settings:
    return Settings(storage_root=tmp_path / "b", minio=testbed_settings.minio(testbed_env))


@pytest.fixture
def store(settings) -> MirrorStore:
    return MirrorStore(settings.storage_root / settings.minio.mirror_dir)
