"""Config restore from a point's tar or a commit of the config history (tmp_path only)."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from actors.actions.runs import run_component
from actors.config import backup as config_files
from actors.config.restore import diff, mask_secrets, restore
from core.atomic import sha256_of
from core.component import PermanentError
from core.config import Settings
from core.points import Storage

ENV = "MYSQL_PASSWORD=old-db-secret\nSECRET_KEY=old-app-key\nSVR_HTTP_PORT=9380\n"
FILES = [".env", "docker-compose.yml", "entrypoint.sh", "nginx/ragflow.conf"]


@pytest.fixture
def docker_dir(tmp_path) -> Path:
    folder = tmp_path / "ragflow" / "docker"
    (folder / "nginx").mkdir(parents=True)
    (folder / ".env").write_text(ENV)
    os.chmod(folder / ".env", 0o600)
    (folder / "docker-compose.yml").write_text("services:\n  ragflow:\n    image: infiniflow/ragflow:v0.22.0\n")
    (folder / "nginx" / "ragflow.conf").write_text("server { listen 80; }\n")
    (folder / "entrypoint.sh").write_text("#!/bin/sh\nexec ragflow\n")
    os.chmod(folder / "entrypoint.sh", 0o755)
    return folder


@pytest.fixture
def settings(tmp_path, docker_dir) -> Settings:
    return Settings(storage_root=tmp_path / "backups", ragflow_dir=docker_dir)


def back_up(settings: Settings):
    point = Storage(settings.storage_root).new_point([config_files.NAME])
    record = run_component(settings, point, config_files.NAME)
    assert record is not None and record.status == "ok", record and record.error
    return point, record


def tree(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: kind, bytes or link target, mode."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[str(path.relative_to(folder))] = ("link", os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(folder))] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode))
        else:
            found[str(path.relative_to(folder))] = ("dir", stat.S_IMODE(info.st_mode))
    return found


def mess_up(docker_dir: Path) -> None:
    (docker_dir / ".env").write_text(ENV.replace("old-db-secret", "new-db-secret") + "RAGFLOW_IMAGE=v0.23\n")
    (docker_dir / "nginx" / "ragflow.conf").unlink()
    os.chmod(docker_dir / "entrypoint.sh", 0o644)
    (docker_dir / "extra.yml").write_text("added: later\n")


def test_a_point_brings_back_edited_and_deleted_files_with_their_modes(settings, docker_dir):
    original = tree(docker_dir)
    point, record = back_up(settings)
    mess_up(docker_dir)

    result = restore(settings, point=point)
    assert result.ok, result.problems
    assert result.written == [".env", "entrypoint.sh", "nginx/ragflow.conf"]
    assert result.unchanged == ["docker-compose.yml"] and result.left_alone == ["extra.yml"]
    assert (result.expected, result.found) == (4, 4)
    assert tree(docker_dir) == {**original, "extra.yml": ("file", b"added: later\n", 0o644)}
    assert stat.S_IMODE((docker_dir / ".env").stat().st_mode) == 0o600
    assert not [p for p in docker_dir.rglob("*") if ".tmp-" in p.name]

    again = restore(settings, point=point, record=record, delete_extra=True)
    assert again.written == [] and again.deleted == ["extra.yml"]
    assert tree(docker_dir) == original


def test_a_commit_of_the_history_brings_back_that_version(settings, docker_dir):
    _, first = back_up(settings)
    (docker_dir / ".env").write_text(ENV + "RAGFLOW_IMAGE=v0.23\n")
    second = config_files.commit_config(settings, "watcher")
    (docker_dir / ".env").write_text("broken\n")
    os.chmod(docker_dir / "entrypoint.sh", 0o600)

    only_env = restore(settings, commit=second, files=[".env"])
    assert only_env.ok and only_env.written == [".env"] and only_env.expected == 1
    assert (docker_dir / ".env").read_text() == ENV + "RAGFLOW_IMAGE=v0.23\n"
    assert stat.S_IMODE((docker_dir / "entrypoint.sh").stat().st_mode) == 0o600  # not selected

    result = restore(settings, commit=first.details["git_commit"])
    assert result.ok and result.source == f"commit {first.details['git_commit']}"
    assert (docker_dir / ".env").read_text() == ENV
    assert stat.S_IMODE((docker_dir / ".env").stat().st_mode) == 0o600  # Git knows no mode: the current one stays
    assert stat.S_IMODE((docker_dir / "entrypoint.sh").stat().st_mode) == 0o700  # the execute bit comes back

    with pytest.raises(PermanentError, match="no commit"):
        restore(settings, commit="0" * 40)
    with pytest.raises(PermanentError, match="either a backup point"):
        restore(settings)


def test_the_diff_shows_what_would_change_with_secret_values_masked(settings, docker_dir):
    point, _ = back_up(settings)
    assert diff(settings, point=point) == ""
    mess_up(docker_dir)

    text = diff(settings, point=point)
    assert "old-db-secret" not in text and "new-db-secret" not in text and "old-app-key" not in text
    assert "-MYSQL_PASSWORD=***\n+MYSQL_PASSWORD=***" in text
    assert "-RAGFLOW_IMAGE=v0.23" in text  # the chosen version lacks the line added since
    assert " SVR_HTTP_PORT=9380" in text and " SECRET_KEY=***" in text
    assert "--- /dev/null\n+++ b/nginx/ragflow.conf\n@@ -0,0 +1 @@\n+server { listen 80; }" in text
    assert "diff a/entrypoint.sh b/entrypoint.sh\nold mode 100644\nnew mode 100755" in text
    assert "extra.yml" not in text
    assert "-added: later" in diff(settings, point=point, delete_extra=True)
    assert mask_secrets("  - REDIS_URL=redis://:hunter2@redis:6379/1") == "  - REDIS_URL=redis://:***@redis:6379/1"
    assert mask_secrets("  password: 'infini'") == "  password: ***"


def test_a_dry_run_writes_nothing_and_says_what_it_would_do(settings, docker_dir):
    point, _ = back_up(settings)
    mess_up(docker_dir)
    before = tree(docker_dir)
    result = restore(settings, point=point, dry_run=True, delete_extra=True)
    assert result.dry_run and result.written == [".env", "entrypoint.sh", "nginx/ragflow.conf"]
    assert result.deleted == ["extra.yml"]
    assert tree(docker_dir) == before


def test_a_scratch_folder_gets_the_files_and_the_live_folder_is_untouched(settings, docker_dir, tmp_path):
    point, _ = back_up(settings)
    mess_up(docker_dir)
    before = tree(docker_dir)
    scratch = tmp_path / "drill" / "docker"
    result = restore(settings, point=point, target_dir=scratch)
    assert result.ok and result.written == FILES
    assert {name: entry[1:] for name, entry in tree(scratch).items() if entry[0] == "file"} == {
        ".env": (ENV.encode(), 0o600),
        "docker-compose.yml": (b"services:\n  ragflow:\n    image: infiniflow/ragflow:v0.22.0\n", 0o644),
        "entrypoint.sh": (b"#!/bin/sh\nexec ragflow\n", 0o755),
        "nginx/ragflow.conf": (b"server { listen 80; }\n", 0o644),
    }
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert tree(docker_dir) == before


def forge(point, record, members: list[tuple[tarfile.TarInfo, bytes]]):
    """Replace the point's tar by one of our making and give back a record that vouches for it."""
    path = point.folder / config_files.ARTIFACT
    with tarfile.open(path, "w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    files = [{"path": info.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
             for info, data in members]
    artifact = record.artifacts[0].model_copy(update={"bytes": path.stat().st_size, "sha256": sha256_of(path)})
    return record.model_copy(update={"artifacts": [artifact], "details": {**record.details, "files": files}})


def member(name: str, data: bytes = b"evil\n", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


@pytest.mark.parametrize("bad", [
    member("../evil"),
    member("nginx/../../evil"),
    member("/tmp/evil-absolute"),
    member("evil-link", b"", tarfile.SYMTYPE, "/etc/passwd"),
    member("evil-hardlink", b"", tarfile.LNKTYPE, ".env"),
    member(".git/hooks/post-checkout"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "git"])
def test_a_malicious_tar_member_is_refused_without_writing_anything(settings, docker_dir, tmp_path, bad):
    point, record = back_up(settings)
    mess_up(docker_dir)
    forged = forge(point, record, [member(".env", b"MYSQL_PASSWORD=attacker\n"), bad])
    before = tree(tmp_path)
    with pytest.raises(PermanentError, match="nothing was restored"):
        restore(settings, point=point, record=forged)
    with pytest.raises(PermanentError, match="nothing was restored"):
        diff(settings, point=point, record=forged)
    assert tree(tmp_path) == before
    assert not Path("/tmp/evil-absolute").exists()


def test_a_tar_that_does_not_match_its_manifest_is_refused(settings, docker_dir):
    point, record = back_up(settings)
    forge(point, record, [member(".env", b"MYSQL_PASSWORD=attacker\n")])  # the record still vouches for the old tar
    mess_up(docker_dir)
    before = tree(docker_dir)
    with pytest.raises(PermanentError, match="does not match its manifest"):
        restore(settings, point=point)
    assert tree(docker_dir) == before


@pytest.mark.fault("hostile file names: a config file symlinked outside RAGFlow's folder",
                   'restore replaces the link; it never writes through it')
def test_a_file_symlinked_outside_is_replaced_never_written_through(settings, docker_dir, tmp_path):
    point, _ = back_up(settings)
    (tmp_path / "precious").write_text("not RAGFlow's\n")
    (docker_dir / ".env").unlink()
    (docker_dir / ".env").symlink_to(tmp_path / "precious")
    result = restore(settings, point=point)
    assert result.ok and ".env" in result.written
    assert not (docker_dir / ".env").is_symlink() and (docker_dir / ".env").read_text() == ENV
    assert (tmp_path / "precious").read_text() == "not RAGFlow's\n"


def test_a_folder_symlinked_outside_the_target_is_refused(settings, docker_dir, tmp_path):
    point, _ = back_up(settings)
    outside = tmp_path / "outside"
    outside.mkdir()
    (docker_dir / "nginx" / "ragflow.conf").unlink()
    (docker_dir / "nginx").rmdir()
    (docker_dir / "nginx").symlink_to(outside)
    with pytest.raises(PermanentError, match="leads outside"):
        restore(settings, point=point)
    assert list(outside.iterdir()) == []
    with pytest.raises(PermanentError, match="not a plain relative path"):
        restore(settings, point=point, files=["../docker/.env"])
