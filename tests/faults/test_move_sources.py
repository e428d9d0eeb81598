"""Restoring from another installation's storage root when that cannot be done whole: refused before
anything changes, here or there."""
from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest

from core.mirror_store import Entry, MirrorStore
from tests.faults.harness import cli, fingerprint, write_config


def source_with_mirror(root, bucket: str, key: str = "doc.txt") -> None:
    """A mirror of one object in `bucket` beside the source root's config point."""
    store = MirrorStore(root / "minio_mirror")
    temp = store.temp_file(bucket)
    temp.write_bytes(b"chunk")
    store.commit(bucket, key, temp, Entry(size=5, etag="e1"), datetime.now(timezone.utc))
    store.close()


@pytest.mark.fault("a restore from another installation's root into a MinIO holding buckets the source never had",
                   "refused before the safety point, naming the buckets and what to do (remove them, or leave "
                   "MinIO out); exit 2; this MinIO, this RAGFlow folder and the source root unchanged")
def test_a_restore_from_another_root_into_a_minio_with_other_buckets_is_refused(tmp_path, config_point,
                                                                                private_minio):
    source = tmp_path / "backups"  # config_point's root: a complete point of RAGFlow's config
    source_with_mirror(source, "kb-of-the-source")
    client = private_minio.client()
    client.make_bucket("kb-of-this-one")
    client.put_object("kb-of-this-one", "mine.txt", io.BytesIO(b"mine"), 4)
    docker = tmp_path / "second" / "docker"
    docker.mkdir(parents=True)
    (docker / ".env").write_text("MYSQL_PASSWORD=this-ones\n")
    second = write_config(tmp_path / "second.yml", {
        "storage_root": str(tmp_path / "second-backups"), "ragflow_dir": str(docker),
        "mysql": {"enabled": False}, "search": {"enabled": False},
        "minio": {"endpoint": private_minio.endpoint, "access_key": private_minio.access_key,
                  "secret_key": private_minio.secret_key}})
    before = fingerprint(source, ("daily", "minio_mirror", "state", "logs", "locks"))

    result = cli(second, "restore", "--from-root", str(source), "--yes")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "bucket(s) the source installation never had (kb-of-this-one)" in result.stderr
    assert "Traceback" not in result.stderr
    assert fingerprint(source, ("daily", "minio_mirror", "state", "logs", "locks")) == before
    assert (docker / ".env").read_text() == "MYSQL_PASSWORD=this-ones\n"
    assert [b.name for b in client.list_buckets()] == ["kb-of-this-one"]
    assert not (tmp_path / "second-backups" / "safety").exists() or \
        not any((tmp_path / "second-backups" / "safety").iterdir())


@pytest.mark.fault("a restore from another installation's root in single-bucket mode under another prefix_path",
                   "refused before the safety point, naming the source's prefix and this config's (none of its "
                   "objects would be restored); exit 2; nothing changed")
def test_a_restore_from_another_root_under_another_bucket_prefix_is_refused(tmp_path, config_point, private_minio):
    source = tmp_path / "backups"  # config_point's root: a complete point of RAGFlow's config
    source_with_mirror(source, "ragflow", "prod/3f2a/doc.txt")
    private_minio.client().make_bucket("ragflow")
    docker = tmp_path / "second" / "docker"
    docker.mkdir(parents=True)
    second = write_config(tmp_path / "second.yml", {
        "storage_root": str(tmp_path / "second-backups"), "ragflow_dir": str(docker),
        "mysql": {"enabled": False}, "search": {"enabled": False},
        "minio": {"endpoint": private_minio.endpoint, "access_key": private_minio.access_key,
                  "secret_key": private_minio.secret_key, "bucket": "ragflow", "prefix_path": "staging"}})
    before = fingerprint(source, ("daily", "minio_mirror"))

    result = cli(second, "restore", "--from-root", str(source), "--yes")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "under 'prod/'" in result.stderr and "minio.prefix_path is 'staging/'" in result.stderr
    assert fingerprint(source, ("daily", "minio_mirror")) == before
    assert list(docker.iterdir()) == []  # RAGFlow's folder was not restored either
