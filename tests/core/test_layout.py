"""The storage layout (core/layout.py) is the one place that names paths under the storage root."""
from __future__ import annotations

import re
from pathlib import Path

from core.config import Settings
from core.layout import Layout

REPO = Path(__file__).resolve().parents[2]
# A root-level folder name joined onto a path, anywhere but in the layout itself.
JOINED = re.compile(r'/ "(state|locks|logs|decrypted|offsite|staging|minio_mirror|config_repo)"'
                    r'|storage_root / |private_folder\([^)]*\("(state|locks|logs|decrypted|offsite)"')


def test_no_module_but_the_layout_joins_names_under_the_storage_root():
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for package in ("agent", "actors", "core") for path in sorted((REPO / package).rglob("*.py"))
                 if path != REPO / "core" / "layout.py"
                 for number, line in enumerate(path.read_text().splitlines(), start=1) if JOINED.search(line)]
    assert offenders == []


def test_the_layout_of_a_config_places_the_mirror_and_the_config_history_where_the_config_says(tmp_path):
    settings = Settings(storage_root=tmp_path, minio={"mirror_dir": "objects"}, config_files={"git_repo": "history"})
    layout = settings.layout
    assert (layout.mirror, layout.config_repo) == (tmp_path / "objects", tmp_path / "history")
    assert layout.notify_state == tmp_path / "state" / "notify.json"
    assert layout.component_lock("mysql") == tmp_path / "locks" / "mysql.lock"


def test_folders_the_layout_makes_are_private_and_never_made_through_a_symlink(tmp_path):
    layout = Layout(tmp_path / "root")
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "offsite").symlink_to(tmp_path / "elsewhere")
    staging_refused = False
    try:
        layout.offsite_staging()
    except Exception:  # noqa: BLE001 - core/safe_paths.py refuses it, naming the path
        staging_refused = True
    assert staging_refused and not any((tmp_path / "elsewhere").iterdir())
    assert (layout.made_lock("restore.lock").parent.stat().st_mode & 0o777) == 0o700
