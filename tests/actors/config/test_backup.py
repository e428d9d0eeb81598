"""Config files: a daily tar of RAGFlow's docker/ files and a Git history of their changes (tmp_path only)."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from actors.actions.runs import run_component
from actors.config import backup as config_files
from actors.config.checks import check_config_files
from core.component import PermanentError
from core.config import Settings
from core.points import Storage
from core.ragflow_folder import MAX_FILE_BYTES, kept_files

EXPECTED = [".env", "docker-compose.yml", "entrypoint.sh", "nginx/ragflow.conf", "service_conf.yaml.template"]


@pytest.fixture
def docker_dir(tmp_path) -> Path:
    """A small RAGFlow-like docker/ folder, with the clutter a real one gathers."""
    folder = tmp_path / "ragflow" / "docker"
    (folder / "nginx").mkdir(parents=True)
    (folder / ".env").write_text("MYSQL_PASSWORD=infini_rag_flow\nREDIS_PASSWORD=infini_rag_flow\n")
    (folder / "docker-compose.yml").write_text("services:\n  ragflow:\n    image: infiniflow/ragflow:v0.22.0\n")
    (folder / "service_conf.yaml.template").write_text("mysql:\n  password: '${MYSQL_PASSWORD}'\n")
    (folder / "nginx" / "ragflow.conf").write_text("server { listen 80; }\n")
    (folder / "entrypoint.sh").write_text("#!/bin/sh\nexec ragflow\n")
    os.chmod(folder / "entrypoint.sh", 0o755)
    (folder / ".docker-compose.yml.swp").write_bytes(b"b0VIM 9.0")
    (folder / "docker-compose.yml~").write_text("old\n")
    (folder / "nginx" / ".#ragflow.conf").write_text("emacs lock\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "id_rsa.yml").write_text("not RAGFlow's\n")
    (folder / "stolen.yml").symlink_to(outside / "id_rsa.yml")
    (folder / "nginx" / "proxy.conf").symlink_to(outside / "id_rsa.yml")
    return folder


@pytest.fixture
def settings(tmp_path, docker_dir) -> Settings:
    return Settings(storage_root=tmp_path / "backups", ragflow_dir=docker_dir)


def back_up(settings: Settings):
    point = Storage(settings.storage_root).new_point([config_files.NAME])
    record = run_component(settings, point, config_files.NAME)
    assert record is not None and record.status == "ok", record and record.error
    return point, record


def repo_log(settings: Settings) -> list[dict]:
    return config_files.history(settings, limit=100)


def test_the_tar_holds_exactly_the_config_files_with_their_modes(settings, docker_dir):
    point, record = back_up(settings)
    path = point.folder / config_files.ARTIFACT
    with tarfile.open(path, "r:gz") as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert sorted(members) == EXPECTED
        assert all(m.isfile() and m.uname == "" and m.gname == "" for m in members.values())
        assert members["entrypoint.sh"].mode == 0o755
        assert archive.extractfile(members[".env"]).read() == (docker_dir / ".env").read_bytes()
    assert record.counts == {"files": 5}
    assert [f["path"] for f in record.details["files"]] == EXPECTED
    env = next(f for f in record.details["files"] if f["path"] == ".env")
    assert env["sha256"] == hashlib.sha256((docker_dir / ".env").read_bytes()).hexdigest()
    assert point.manifest().status == "complete"


@pytest.mark.fault("hostile file names: a symlink leading outside RAGFlow's folder",
                   'it is not archived')
def test_a_symlink_leading_outside_ragflow_dir_is_not_archived(settings, docker_dir):
    point, _ = back_up(settings)
    with tarfile.open(point.folder / config_files.ARTIFACT, "r:gz") as archive:
        names = archive.getnames()
        contents = b"".join(archive.extractfile(m).read() for m in archive.getmembers())
    assert "stolen.yml" not in names and "nginx/proxy.conf" not in names
    assert b"not RAGFlow's" not in contents
    assert not (settings.storage_root / "config_repo" / "stolen.yml").exists()
    assert "leads outside ragflow_dir" in (point.folder / "backup.log").read_text()


def test_editor_swap_and_backup_files_are_skipped_even_when_a_pattern_matches_them(settings, docker_dir):
    settings.config_files.patterns = ["*", "nginx/*"]
    (docker_dir / ".env.swp").write_bytes(b"b0VIM 9.0")
    names = [item.path for item in config_files.collect_files(settings)]
    assert names == [".env", "docker-compose.yml", "entrypoint.sh", "nginx/ragflow.conf", "service_conf.yaml.template"]


def test_a_symlink_staying_inside_ragflow_dir_is_archived_as_its_content(settings, docker_dir):
    (docker_dir / "docker-compose-gpu.yml").symlink_to(docker_dir / "docker-compose.yml")
    point, _ = back_up(settings)
    with tarfile.open(point.folder / config_files.ARTIFACT, "r:gz") as archive:
        member = archive.getmember("docker-compose-gpu.yml")
        assert member.isfile()
        assert archive.extractfile(member).read() == (docker_dir / "docker-compose.yml").read_bytes()


def test_the_tar_and_the_repository_are_private(settings):
    point, _ = back_up(settings)
    assert stat.S_IMODE((point.folder / config_files.ARTIFACT).stat().st_mode) == 0o600
    repo = settings.storage_root / "config_repo"
    assert stat.S_IMODE(repo.stat().st_mode) == 0o700
    assert stat.S_IMODE((repo / ".env").stat().st_mode) == 0o600
    for folder, _, names in os.walk(repo):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in names:
            assert stat.S_IMODE(os.lstat(Path(folder, name)).st_mode) & 0o077 == 0, Path(folder, name)


def test_the_first_backup_commits_every_file_and_records_the_commit(settings):
    _, record = back_up(settings)
    log = repo_log(settings)
    assert len(log) == 1
    assert log[0]["sha"] == record.details["git_commit"]
    assert log[0]["files"] == EXPECTED
    assert log[0]["message"].startswith("config: ") and ".env" in log[0]["message"]


def test_a_second_backup_without_changes_makes_no_commit(settings):
    _, first = back_up(settings)
    _, second = back_up(settings)
    assert len(repo_log(settings)) == 1
    assert second.details["git_commit"] == first.details["git_commit"]
    assert config_files.commit_config(settings, "watcher") is None


def test_editing_env_makes_exactly_one_commit_naming_it(settings, docker_dir):
    back_up(settings)
    with open(docker_dir / ".env", "a") as env:
        env.write("RAGFLOW_IMAGE=infiniflow/ragflow:v0.22.1\n")
    point, record = back_up(settings)
    log = repo_log(settings)
    assert len(log) == 2
    assert log[0]["message"] == f"config: .env changed (backup {point.name})"
    assert log[0]["files"] == [".env"]
    assert log[0]["sha"] == record.details["git_commit"]
    assert (settings.storage_root / "config_repo" / ".env").read_bytes() == (docker_dir / ".env").read_bytes()


def test_deleting_a_file_is_a_commit_too(settings, docker_dir):
    back_up(settings)
    (docker_dir / "nginx" / "ragflow.conf").unlink()
    sha = config_files.commit_config(settings, "watcher")
    assert sha is not None
    log = repo_log(settings)
    assert log[0]["sha"] == sha
    assert log[0]["message"] == "config: nginx/ragflow.conf removed (watcher)"
    assert not (settings.storage_root / "config_repo" / "nginx").exists()


def test_commits_work_without_any_global_git_identity(settings, tmp_path, monkeypatch):
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    monkeypatch.setenv("HOME", str(empty_home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    assert config_files.commit_config(settings, "first") is not None


def test_a_sound_archive_passes_verify(settings):
    point, record = back_up(settings)
    assert config_files.verify(settings, point, record) == []


def test_a_corrupted_archive_is_caught_by_verify(settings):
    point, record = back_up(settings)
    path = point.folder / config_files.ARTIFACT
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = config_files.verify(settings, point, record)
    assert problems and "SHA-256" in problems[0]


def test_an_archive_that_disagrees_with_the_manifest_is_caught_by_verify(settings):
    point, record = back_up(settings)
    files = [dict(f) for f in record.details["files"]]
    files[0]["sha256"] = "0" * 64
    forged = record.model_copy(update={"details": {**record.details, "files": files}})
    assert any("does not match its SHA-256" in p for p in config_files.verify(settings, point, forged))
    fewer = record.model_copy(update={"details": {**record.details, "files": record.details["files"][1:]}})
    assert any("members differ" in p for p in config_files.verify(settings, point, fewer))


def test_a_missing_ragflow_dir_fails_naming_the_setting(settings, tmp_path):
    settings.ragflow_dir = tmp_path / "no-such-folder"
    point = Storage(settings.storage_root).new_point([config_files.NAME])
    record = run_component(settings, point, config_files.NAME)
    assert record is not None and record.status == "failed"
    assert "PermanentError" in record.error and "ragflow_dir" in record.error
    assert not (point.folder / config_files.ARTIFACT).exists()
    with pytest.raises(PermanentError, match="ragflow_dir"):
        config_files.commit_config(settings, "watcher")


# ---------------------------------------------------------------- what to keep of RAGFlow v0.27's folder

V027 = Path(__file__).resolve().parents[3] / "testbed" / "ragflow_docker" / "v0.27"
V027_KEPT = [
    ".env", ".env.single-bucket-example", "docker-compose-CN-oc9.yml", "docker-compose-base.yml",
    "docker-compose-macos.yml", "docker-compose.yml", "entrypoint.sh", "infinity_conf.toml", "init-clickhouse.sql",
    "init.sql", "launch_backend_service.sh", "migration.sh", "nginx/nginx.conf", "nginx/proxy.conf",
    "nginx/ragflow.conf.golang", "nginx/ragflow.conf.hybrid", "nginx/ragflow.conf.python", "nginx/ragflow.https.conf",
    "oceanbase-entrypoint.sh", "oceanbase/init.d/vec_memory.sql", "service_conf.yaml.template",
]


@pytest.fixture
def v027_dir(tmp_path) -> Path:
    """RAGFlow v0.27's docker/ folder after a while in use: logs and database files in the folders it mounts."""
    folder = tmp_path / "ragflow" / "docker"
    shutil.copytree(V027, folder)
    for data in ("ragflow-logs/ragflow_server.log", "oceanbase/data/store/clog.0", "oceanbase/conf/ob/config.yaml",
                 "seekdb/sstable.bin", "ragflow-logs/nginx/access.log"):
        (folder / data).parent.mkdir(parents=True, exist_ok=True)
        (folder / data).write_bytes(b"runtime data, not configuration\n")
    return folder


def test_the_backup_keeps_every_file_ragflow_v027_mounts_or_an_operator_edits_and_none_of_its_data(tmp_path, v027_dir):
    settings = Settings(storage_root=tmp_path / "backups", ragflow_dir=v027_dir)
    point, record = back_up(settings)
    with tarfile.open(point.folder / config_files.ARTIFACT) as archive:
        assert sorted(archive.getnames()) == V027_KEPT
    assert sorted(f for f in repo_log(settings)[0]["files"]) == V027_KEPT


def test_the_configured_patterns_are_kept_in_addition_to_the_derived_list(tmp_path, v027_dir):
    (v027_dir / "README.md").write_text("notes\n")
    settings = Settings(storage_root=tmp_path / "backups", ragflow_dir=v027_dir)
    settings.config_files.patterns = ["README.md"]
    assert [f.path for f in config_files.collect_files(settings)] == sorted([*V027_KEPT, "README.md"])


def test_a_file_a_compose_file_starts_mounting_is_kept_and_a_folder_of_data_is_not(settings, docker_dir):
    (docker_dir / "my.cnf").write_text("[mysqld]\nmax_connections=2000\n")
    (docker_dir / "certs").mkdir()
    (docker_dir / "certs" / "ragflow.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (docker_dir / "pgdata").mkdir()
    (docker_dir / "pgdata" / "base.db").write_bytes(b"\0" * 64)
    (docker_dir / "docker-compose.override.yml").write_text(
        "services:\n  mysql:\n    volumes:\n      - ./my.cnf:/etc/mysql/conf.d/my.cnf\n"
        "      - ./certs:/etc/certs:ro\n      - ./pgdata:/var/lib/postgresql/data\n"
        "      - type: bind\n        source: ../../elsewhere\n        target: /x\n")
    kept = [f.path for f in config_files.collect_files(settings)]
    assert "my.cnf" in kept and "certs/ragflow.pem" in kept and "docker-compose.override.yml" in kept
    assert not any(path.startswith(("pgdata/", "..")) for path in kept)
    assert "id_rsa.yml" not in " ".join(kept)


def test_a_large_file_in_a_mounted_folder_is_data_and_is_not_kept(settings, docker_dir):
    (docker_dir / "models").mkdir()
    (docker_dir / "models" / "config.json").write_text("{}\n")
    (docker_dir / "models" / "weights.bin").write_bytes(b"\0" * (MAX_FILE_BYTES + 1))
    (docker_dir / "docker-compose.yml").write_text("services:\n  tei:\n    volumes:\n      - ./models:/data:ro\n")
    kept = [f.path for f in config_files.collect_files(settings)]
    assert "models/config.json" in kept and "models/weights.bin" not in kept
    assert "models/weights.bin" not in kept_files(docker_dir)


def test_a_compose_file_that_is_not_yaml_is_still_kept_and_breaks_nothing(settings, docker_dir):
    (docker_dir / "docker-compose.yml").write_text("services: [unclosed\n  # - ./nginx/ragflow.conf:/etc/nginx/x\n")
    kept = [f.path for f in config_files.collect_files(settings)]
    assert kept == EXPECTED


def test_doctor_lists_the_files_that_are_watched_and_kept(tmp_path, v027_dir):
    settings = Settings(storage_root=tmp_path / "backups", ragflow_dir=v027_dir)
    check = check_config_files(settings)
    assert check.status == "ok"
    assert check.detail.startswith(f"{len(V027_KEPT)} files watched and archived daily in {v027_dir}: ")
    assert check.detail.endswith(", ".join(V027_KEPT))
