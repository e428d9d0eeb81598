"""A hostile storage root (issue 12): someone who can write into it plants names that leave their folder,
symlinks, FIFOs, devices, hard links and absurd manifests. Every command refuses them with a message naming
the file and what is wrong; nothing outside the folder is read or written; later runs keep working."""
from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from core.points import Storage
from tests.faults.harness import cli, write_config
from tests.faults.test_concurrency import ragflow_dir

ARTIFACT = "config_backup.tar.gz"


def state_of(folder: Path) -> dict[str, tuple[int, str]]:
    """Mode and SHA-256 of every file under a folder (and the folder's own mode): 'unchanged' in one value."""
    found = {".": (stat.S_IMODE(os.lstat(folder).st_mode), "")}
    for path in sorted(folder.rglob("*")):
        info = os.lstat(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
        found[str(path.relative_to(folder))] = (stat.S_IMODE(info.st_mode), digest)
    return found


def said(done: subprocess.CompletedProcess) -> str:
    """What a command printed, as one line (rich wraps long messages)."""
    return " ".join((done.stdout + done.stderr).split())


def edit_manifest(folder: Path, change) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def artifact_of(manifest: dict) -> dict:
    return manifest["components"]["config"]["artifacts"][0]


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch):
    """Rich tables as wide as their text in the commands run here: a message is never wrapped in a cell."""
    monkeypatch.setenv("COLUMNS", "4000")


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the storage root, with a file the attacker would like read or overwritten."""
    folder = tmp_path / "outside"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "secret").write_text("not for the backup tool\n")
    (folder / "secret").chmod(0o644)
    return folder


@pytest.fixture
def encrypted_point(tmp_path):
    """A config with encryption on (an age identity generated here), and one complete encrypted point."""
    identity = tmp_path / "identity.txt"
    made = subprocess.run(["age-keygen", "-o", str(identity)], capture_output=True, text=True, check=True)
    recipient = made.stderr.split("Public key:")[1].split()[0]
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(ragflow_dir(tmp_path)),
        "minio": {"enabled": False}, "mysql": {"enabled": False}, "search": {"enabled": False},
        "encryption": {"enabled": True, "recipients": [recipient]}})
    assert cli(config, "backup", "--local", "-C", "config").returncode == 0
    [point] = Storage(tmp_path / "backups").points("daily")
    assert (point.folder / f"{ARTIFACT}.age").is_file() and not (point.folder / ARTIFACT).exists()
    return config, point, identity


# ---------------------------------------------------------------- names that leave the point


@pytest.mark.fault("hostile storage: an encrypted point's manifest names an artifact '/abs/path' or '../../../../x'",
                   "verify --identity and restore --dry-run --identity refuse, naming the manifest and the name; "
                   "nothing is decrypted outside the point: an existing file there is unchanged, a new one never made")
def test_an_encrypted_artifact_named_outside_the_point_is_never_written_there(tmp_path, encrypted_point, outside):
    config, point, identity = encrypted_point
    before = state_of(outside)
    climbing = "../" * 12 + str(outside / "planted").lstrip("/")
    for name in (str(outside / "secret"), climbing):
        edit_manifest(point.folder, lambda m: artifact_of(m).update(name=name))
        verified = cli(config, "verify", point.ref, "--identity", str(identity))
        assert verified.returncode == 1 and "Traceback" not in said(verified)
        assert "is a path, not a plain name" in said(verified) and "problems found" in said(verified)
        restored = cli(config, "restore", "--point", point.ref, "--dry-run", "--identity", str(identity))
        assert restored.returncode == 1 and "Traceback" not in said(restored)
        assert "manifest.json" in said(restored) and "is a path, not a plain name" in said(restored)
        assert state_of(outside) == before and not (outside / "planted").exists()
    scratch = tmp_path / "backups" / "decrypted"
    assert not scratch.exists() or not list(scratch.iterdir())  # no decrypted copy made, or none left behind


@pytest.mark.fault("hostile storage: a manifest names an artifact by an absolute path with its true hash, or by '../..'",
                   "verify reports the name as a path (not a plain name) and exits 1; the file outside is never "
                   "read: its size and hash appear nowhere")
def test_an_artifact_named_by_a_path_outside_the_point_is_never_read(config_point, outside):
    config, point = config_point
    secret = outside / "secret"
    relative = os.path.relpath(secret, point.folder)
    for name in (str(secret), relative):
        edit_manifest(point.folder, lambda m: artifact_of(m).update(
            name=name, bytes=secret.stat().st_size, sha256=hashlib.sha256(secret.read_bytes()).hexdigest()))
        verified = cli(config, "verify", point.ref)
        assert verified.returncode == 1 and "problems found" in said(verified)
        assert "is a path, not a plain name" in said(verified)
        assert f"has {secret.stat().st_size} bytes" not in said(verified)


def minio_only(tmp_path: Path, private_minio) -> tuple[Path, Path, object]:
    """A config of MinIO alone (the test's private server), its storage root, and the server's settings."""
    m = private_minio.settings()
    root = tmp_path / "backups"
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(root), "mysql": {"enabled": False}, "search": {"enabled": False},
        "config_files": {"enabled": False},
        "minio": {"endpoint": m.endpoint, "access_key": m.access_key, "secret_key": m.secret_key.get_secret_value()}})
    return config, root, m


@pytest.mark.fault("hostile storage: a mirror index row's path names a file outside the mirror (absolute, '../', "
                   "or through a symlink planted in the mirror), or the mirror folder itself is a symlink",
                   "restore -C minio refuses before the first write ('nothing was restored'), naming the object and "
                   "the index path; the outside file's bytes never reach the bucket")
def test_a_mirror_index_path_outside_the_mirror_is_never_uploaded(tmp_path, private_minio, outside):
    from actors.minio.mirror import reconcile
    from core.config import Settings

    config, root, m = minio_only(tmp_path, private_minio)
    client = private_minio.client()
    client.make_bucket("kb-hostile")
    for key in ("a.txt", "b.txt", "c.txt"):
        client.put_object("kb-hostile", key, io.BytesIO(b"mirrored bytes"), 14)
    assert reconcile(Settings(storage_root=root, minio=m)).complete
    mirror = root / "minio_mirror"
    (mirror / "planted").mkdir()
    os.symlink(outside, mirror / "planted" / "link")
    secret = outside / "secret"
    rows = {"a.txt": str(secret), "b.txt": "../../outside/secret", "c.txt": "planted/link/secret"}
    with sqlite3.connect(mirror / ".index.sqlite") as conn:
        for key, path in rows.items():
            conn.execute("UPDATE objects SET path=?, size=?, md5=? WHERE bucket='kb-hostile' AND key=?",
                         (path, secret.stat().st_size, hashlib.md5(secret.read_bytes()).hexdigest(), key))
    for key in rows:
        client.remove_object("kb-hostile", key)

    restored = cli(config, "restore", "-C", "minio", "--yes")
    assert restored.returncode == 1 and "Traceback" not in said(restored)
    assert "nothing was restored" in said(restored) and "nothing was changed" in said(restored)
    assert "rollback" not in said(restored)  # it refused before its first write: nothing to roll back
    assert "s3://kb-hostile/a.txt" in said(restored) and "is not beneath" in said(restored)
    assert "s3://kb-hostile/b.txt" in said(restored) and "'..' is not a file name" in said(restored)
    assert "s3://kb-hostile/c.txt" in said(restored) and "is a symbolic link" in said(restored)
    assert list(client.list_objects("kb-hostile", recursive=True)) == []

    os.rename(mirror, root / "mirror.real")  # the whole mirror folder swapped for a link to another tree
    os.symlink(root / "mirror.real", mirror)
    linked = cli(config, "restore", "-C", "minio", "--yes")
    assert linked.returncode == 1 and f"{mirror}: is a symbolic link" in said(linked), said(linked)
    assert list(client.list_objects("kb-hostile", recursive=True)) == []


@pytest.mark.fault("hostile storage: a mirror index row gives an object user metadata named like S3's own headers "
                   "(x-amz-tagging, x-amz-website-redirect-location, cache-control), or a value with a line break, "
                   "or metadata that is not names and values or not JSON, or a content header the mirror never "
                   "keeps (x-amz-object-lock-mode)",
                   "header-like names go back as plain user metadata (x-amz-meta-...): no tags, redirect or "
                   "Cache-Control are set; a broken value or shape, or another header, refuses the restore before "
                   "its safety point, naming the object ('nothing was changed', no rollback)")
def test_metadata_in_a_tampered_mirror_index_is_only_ever_user_metadata(tmp_path, private_minio):
    from actors.minio.mirror import reconcile
    from core.config import Settings

    config, root, m = minio_only(tmp_path, private_minio)
    client = private_minio.client()
    client.make_bucket("kb-meta")
    client.put_object("kb-meta", "doc.txt", io.BytesIO(b"mirrored bytes"), 14, metadata={"origin": "upload"})
    assert reconcile(Settings(storage_root=root, minio=m)).complete
    index = root / "minio_mirror" / ".index.sqlite"

    def tamper(metadata, headers=None) -> None:
        with sqlite3.connect(index) as conn:
            conn.execute("UPDATE objects SET metadata=?, headers=? WHERE bucket='kb-meta' AND key='doc.txt'",
                         (json.dumps(metadata), json.dumps(headers or {})))
        for found in client.list_objects("kb-meta", recursive=True):
            client.remove_object("kb-meta", found.object_name)

    for broken, headers, words in (
            ({"origin": "x\r\nx-amz-tagging: owned=yes"}, None, "not printable US-ASCII"),
            (["x-amz-tagging", "owned=yes"], None, "is a list, not names and values"),
            ({"Cache-Control": "max-age=1"}, None, "not an HTTP field name in lower case"),
            ({}, {"x-amz-object-lock-mode": "COMPLIANCE"}, "'x-amz-object-lock-mode' is not one the mirror keeps")):
        tamper(broken, headers)
        refused = cli(config, "restore", "-C", "minio", "--yes")
        assert refused.returncode == 1 and "Traceback" not in said(refused)
        assert "cannot restore from the mirror: s3://kb-meta/doc.txt" in said(refused), said(refused)
        assert words in said(refused) and "nothing was changed" in said(refused) and "rollback" not in said(refused)
        assert list(client.list_objects("kb-meta", recursive=True)) == []

    with sqlite3.connect(index) as conn:  # not JSON at all
        conn.execute("UPDATE objects SET metadata='{\"origin\": ' WHERE bucket='kb-meta' AND key='doc.txt'")
    refused = cli(config, "restore", "-C", "minio", "--yes")
    assert refused.returncode == 1 and "Traceback" not in said(refused)
    assert "s3://kb-meta: the mirror index's row for 'doc.txt' cannot be read" in said(refused), said(refused)
    assert "nothing was changed" in said(refused) and "rollback" not in said(refused)
    assert list(client.list_objects("kb-meta", recursive=True)) == []
    with sqlite3.connect(index) as conn:  # a time that is not one
        mirrored_at = conn.execute("SELECT mirrored_at FROM objects WHERE key='doc.txt'").fetchone()[0]
        conn.execute("UPDATE objects SET mirrored_at='2020, roughly' WHERE key='doc.txt'")
    refused = cli(config, "restore", "-C", "minio", "--yes")
    assert refused.returncode == 1 and "Traceback" not in said(refused)
    assert "the mirror index holds '2020, roughly' where a time belongs" in said(refused), said(refused)
    assert "nothing was changed" in said(refused) and "rollback" not in said(refused)
    with sqlite3.connect(index) as conn:
        conn.execute("UPDATE objects SET mirrored_at=? WHERE key='doc.txt'", (mirrored_at,))

    tamper({"origin": "upload", "x-amz-tagging": "owned=yes", "x-amz-website-redirect-location": "/elsewhere",
            "cache-control": "max-age=31536000"})
    restored = cli(config, "restore", "-C", "minio", "--yes")
    assert restored.returncode == 0, said(restored)
    assert client.get_object("kb-meta", "doc.txt").read() == b"mirrored bytes"
    headers = {name.lower(): value for name, value in client.stat_object("kb-meta", "doc.txt").metadata.items()}
    assert headers["x-amz-meta-origin"] == "upload" and headers["x-amz-meta-x-amz-tagging"] == "owned=yes"
    assert headers["x-amz-meta-cache-control"] == "max-age=31536000"
    assert "cache-control" not in headers and "x-amz-website-redirect-location" not in headers
    assert client.get_object_tags("kb-meta", "doc.txt") is None


# ---------------------------------------------------------------- symlinks planted in the root


@pytest.mark.fault("hostile storage: the daily (and logs) tier folder replaced by a symlink to a folder elsewhere",
                   "backup refuses ('cannot create a point under ROOT: ROOT/daily: is a symbolic link'), exits 1 and "
                   "writes nothing through it (the target's files and mode are unchanged); list shows the link as "
                   "unsafe; the agent refuses to start naming it; with the real folder back, the next backup completes")
def test_a_symlinked_tier_folder_is_refused_by_backup_and_nothing_is_written_through_it(config_point, outside):
    config, point = config_point
    root = point.storage.root
    os.rename(root / "daily", root / "daily.real")
    os.symlink(outside, root / "daily")
    os.rename(root / "logs", root / "logs.real")
    os.symlink(outside, root / "logs")
    before = state_of(outside)

    done = cli(config, "backup", "--local", "-C", "config")
    assert done.returncode == 1 and "Traceback" not in said(done)
    assert f"cannot create a point under {root}" in said(done) and "is a symbolic link" in said(done)
    assert str(root / "logs") in said(done) or str(root / "daily") in said(done)
    assert state_of(outside) == before
    listed = cli(config, "list")
    assert listed.returncode == 0 and "unsafe" in said(listed) and "is a symbolic link" in said(listed)
    started = cli(config, "agent", timeout=120)
    assert started.returncode == 1 and "cannot start on the storage root" in said(started)
    assert "is a symbolic link" in said(started) and "Traceback" not in said(started)
    assert state_of(outside) == before

    for name in ("daily", "logs"):
        os.unlink(root / name)
        os.rename(root / f"{name}.real", root / name)
    again = cli(config, "backup", "--local", "-C", "config")
    assert again.returncode == 0, said(again)
    assert state_of(outside) == before


@pytest.mark.fault("hostile storage: a point folder that is a symlink to a copy of a point elsewhere",
                   "list shows it as unsafe and ignored (not a point), verify refuses it naming the link, prune keeps "
                   "and reports it and deletes nothing outside; later prunes keep working")
def test_a_symlinked_point_folder_is_never_listed_as_sound_nor_followed_by_prune(tmp_path, config_point):
    config, point = config_point
    root = point.storage.root
    elsewhere = tmp_path / "elsewhere" / "2020-01-01"
    elsewhere.parent.mkdir()
    subprocess.run(["cp", "-a", str(point.folder), str(elsewhere)], check=True)
    edit_manifest(elsewhere, lambda m: m.update(name="2020-01-01"))
    os.symlink(elsewhere, root / "daily" / "2020-01-01")
    before = state_of(elsewhere.parent)
    write_config(config, {**yaml.safe_load(config.read_text()), "retention": {"daily": 1}})

    listed = cli(config, "list")
    assert f"{root / 'daily' / '2020-01-01'} │ FAIL unsafe" in said(listed) and "is a symbolic link" in said(listed)
    assert "│ 2020-01-01 │" not in said(listed)  # never a row of its own as a point
    verified = cli(config, "verify", "daily/2020-01-01")
    assert verified.returncode == 1 and "is a symbolic link" in said(verified) and "Traceback" not in said(verified)
    for _run in range(2):
        pruned = cli(config, "prune")
        assert pruned.returncode == 0, said(pruned)
        assert "never followed nor deleted" in said(pruned)
    assert state_of(elsewhere.parent) == before
    assert cli(config, "verify", point.ref).returncode == 0


@pytest.mark.fault("hostile storage: a prune leftover ('.deleting-...') that is a symlink to a folder elsewhere",
                   "prune removes only the link (never the folder it points to) and goes on; it never crashes "
                   "with 'Cannot call rmtree on a symbolic link'")
def test_a_symlinked_prune_leftover_is_unlinked_not_followed(config_point, outside):
    config, point = config_point
    root = point.storage.root
    os.symlink(outside, root / "daily" / ".deleting-2020-01-01-abcd1234")
    before = state_of(outside)
    for _run in range(2):
        pruned = cli(config, "prune")
        assert pruned.returncode == 0 and "Traceback" not in said(pruned), said(pruned)
    assert not os.path.lexists(root / "daily" / ".deleting-2020-01-01-abcd1234")
    assert state_of(outside) == before


@pytest.mark.fault("hostile storage: an artifact replaced by a symlink to a file elsewhere (with the manifest's "
                   "hash matching the target)",
                   "verify reports the artifact as a symbolic link and exits 1; restore --dry-run refuses the point; "
                   "the file elsewhere is never read or changed")
def test_a_symlinked_artifact_is_reported_and_never_read(config_point, outside):
    config, point = config_point
    secret = outside / "secret"
    (point.folder / ARTIFACT).unlink()
    os.symlink(secret, point.folder / ARTIFACT)
    edit_manifest(point.folder, lambda m: artifact_of(m).update(
        bytes=secret.stat().st_size, sha256=hashlib.sha256(secret.read_bytes()).hexdigest()))
    before = state_of(outside)
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 1 and f"{ARTIFACT}: is a symbolic link" in said(verified)
    restored = cli(config, "restore", "--point", point.ref, "--dry-run")
    assert restored.returncode == 1 and "is a symbolic link" in said(restored) and "Traceback" not in said(restored)
    assert state_of(outside) == before


# ---------------------------------------------------------------- point references


@pytest.mark.fault("hostile storage: a point reference 300 characters long, or with '..' (--point, verify)",
                   "refused with a message ('longer than any file name can be' / 'never contains ..'), exit 1 or 2, "
                   "no traceback")
def test_an_absurd_point_reference_is_refused_with_a_message(config_point):
    config, point = config_point
    long_name = "x" * 300
    for args in (("verify", long_name), ("verify", f"daily/{long_name}"), ("restore", "--point", long_name, "--dry-run")):
        done = cli(config, *args)
        assert done.returncode in (1, 2) and "Traceback" not in said(done)
        assert "300 characters long, longer than any file name can be" in said(done)
    climbing = cli(config, "verify", "daily/../../etc")
    assert climbing.returncode == 1 and "never contains '..'" in said(climbing) and "Traceback" not in said(climbing)


# ---------------------------------------------------------------- our own cases


@pytest.mark.fault("hostile storage: a FIFO, or a character device (/dev/zero's), in place of an artifact",
                   "verify says it is a FIFO / a character device, not a regular file, and exits 1 at once (it never "
                   "blocks on the FIFO nor reads the device forever); restore --dry-run refuses the point")
def test_a_fifo_or_device_in_place_of_an_artifact_is_refused_without_reading_it(config_point):
    config, point = config_point
    (point.folder / ARTIFACT).unlink()
    os.mkfifo(point.folder / ARTIFACT)
    verified = cli(config, "verify", point.ref, timeout=60)
    assert verified.returncode == 1 and "is a FIFO, not a regular file" in said(verified)
    restored = cli(config, "restore", "--point", point.ref, "--dry-run", timeout=60)
    assert restored.returncode == 1 and "is a FIFO" in said(restored)
    (point.folder / ARTIFACT).unlink()
    os.mknod(point.folder / ARTIFACT, 0o600 | stat.S_IFCHR, os.stat("/dev/zero").st_rdev)
    verified = cli(config, "verify", point.ref, timeout=60)
    assert verified.returncode == 1 and "is a character device, not a regular file" in said(verified)


@pytest.mark.fault("hostile storage: an artifact replaced by a hard link to a file elsewhere on the same file system",
                   "verify reports its size or SHA-256 differs (exit 1); prune deletes the point and the file elsewhere "
                   "keeps its bytes and mode (only the link goes)")
def test_a_hard_linked_artifact_is_found_changed_and_pruning_it_leaves_the_other_file_whole(config_point, outside):
    config, point = config_point
    (point.folder / ARTIFACT).unlink()
    os.link(outside / "secret", point.folder / ARTIFACT)
    before = state_of(outside)
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 1 and f"{ARTIFACT}" in said(verified)
    assert "bytes, the manifest says" in said(verified) or "SHA-256 differs" in said(verified)
    # A newer complete point makes the tampered one prunable (retention.daily = 1).
    write_config(config, {**yaml.safe_load(config.read_text()), "retention": {"daily": 1}})
    assert cli(config, "backup", "--local", "-C", "config").returncode == 0
    edit_manifest(point.folder, lambda m: m.update(created_at="2020-01-01T00:00:00+00:00"))
    os.rename(point.folder, point.folder.with_name("2020-01-01"))
    edit_manifest(point.folder.with_name("2020-01-01"), lambda m: m.update(name="2020-01-01"))
    pruned = cli(config, "prune")
    assert pruned.returncode == 0 and "daily/2020-01-01" in said(pruned), said(pruned)
    assert not point.folder.with_name("2020-01-01").exists()
    assert state_of(outside) == before


@pytest.mark.fault("hostile storage: a manifest copied from another point (it names daily/OTHER, lies in daily/THIS)",
                   "verify refuses it ('names the point daily/OTHER, but it lies in daily/THIS'), exit 1; list shows "
                   "the same")
def test_a_manifest_naming_another_point_is_refused(config_point):
    config, point = config_point
    edit_manifest(point.folder, lambda m: m.update(name="2019-12-31"))
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 1
    assert f"names the point daily/2019-12-31, but it lies in {point.ref}" in said(verified)
    listed = cli(config, "list")
    assert "names the point daily/2019-12-31" in said(listed) and "Traceback" not in said(listed)


@pytest.mark.fault("hostile storage: a 2 GB manifest.json (sparse)",
                   "verify, list and prune refuse to read it ('is N bytes, more than a manifest can be'); the point "
                   "is kept, nothing is read into memory")
def test_a_huge_manifest_is_refused_without_reading_it(config_point):
    config, point = config_point
    with open(point.folder / "manifest.json", "r+b") as handle:
        handle.truncate(2 << 30)
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 1 and "more than a manifest can be" in said(verified)
    listed = cli(config, "list")
    assert listed.returncode == 0 and "more than a manifest can be" in said(listed)
    pruned = cli(config, "prune")
    assert pruned.returncode == 0 and point.folder.is_dir()


@pytest.mark.fault("hostile storage: absurd numbers in a manifest (an artifact of -1 or 10^30 bytes)",
                   "verify reports the size mismatch and exits 1; list and restore --dry-run give no traceback")
def test_absurd_numbers_in_a_manifest_are_reported_not_crashed_on(config_point):
    config, point = config_point
    for absurd in (-1, 10 ** 30):
        edit_manifest(point.folder, lambda m: artifact_of(m).update(bytes=absurd))
        verified = cli(config, "verify", point.ref)
        assert verified.returncode == 1 and f"the manifest says {absurd}" in said(verified)
        for args in (("list",), ("restore", "--point", point.ref, "--dry-run")):
            assert "Traceback" not in said(cli(config, *args))


@pytest.mark.fault("hostile storage: the .records folder of a running point replaced by a symlink to a folder elsewhere",
                   "the component's record is never written through it: saving it fails naming the link (a "
                   "permanent error), the point never becomes complete, the folder elsewhere is unchanged")
def test_a_symlinked_records_folder_is_never_written_through(config_point, outside):
    from actors.actions.runs import run_component
    from core.config import Settings
    from core.safe_paths import UnsafePath

    config, point = config_point
    running = point.storage.new_point(["config"])
    os.rename(running.folder / ".records", running.folder / ".records.real")
    os.symlink(outside, running.folder / ".records")
    before = state_of(outside)
    settings = Settings(**yaml.safe_load(config.read_text()))
    with pytest.raises(UnsafePath, match=r"\.records: is a symbolic link"):
        run_component(settings, running, "config")
    assert state_of(outside) == before
    assert running.manifest().status != "complete"


@pytest.mark.fault("hostile storage: a point in the offsite repository with an artifact that is a symlink (and a "
                   "symlinked folder) leading outside",
                   "restore --from offsite refuses the fetched point naming the link; the folder outside keeps its "
                   "mode and files (fetching chmods nothing through a link); the staging folder is removed")
def test_an_offsite_point_with_planted_symlinks_is_refused_and_chmods_nothing_outside(tmp_path, config_point, outside):
    config, point = config_point
    password = tmp_path / "offsite.pass"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    settings = yaml.safe_load(config.read_text())
    settings["offsite"] = {"enabled": True, "repository": str(tmp_path / "usb" / "ragflow"),
                           "password_file": str(password)}
    write_config(config, settings)
    secret = outside / "secret"
    (point.folder / ARTIFACT).unlink()
    os.symlink(secret, point.folder / ARTIFACT)
    os.symlink(outside, point.folder / "more")
    edit_manifest(point.folder, lambda m: artifact_of(m).update(
        bytes=secret.stat().st_size, sha256=hashlib.sha256(secret.read_bytes()).hexdigest()))
    copied = cli(config, "offsite", "copy", "--no-mirror")
    assert copied.returncode == 0, said(copied)
    before = state_of(outside)

    restored = cli(config, "restore", "--from", "offsite", "--point", point.ref, "--dry-run")
    assert restored.returncode == 1 and "Traceback" not in said(restored)
    assert f"{ARTIFACT}: is a symbolic link" in said(restored)
    assert state_of(outside) == before
    assert not list((point.storage.root / "offsite").glob("restore-*"))


@pytest.mark.fault("the storage root itself is a symlink (as QNAP shares are)",
                   "it is followed (it comes from the config): backup, list, verify and prune work through it and "
                   "nothing is reported unsafe")
def test_a_storage_root_that_is_a_symlink_is_followed(tmp_path):
    real = tmp_path / "share" / "backups"
    real.mkdir(parents=True)
    os.symlink(real, tmp_path / "backups")
    config = write_config(tmp_path / "config.yml", {
        "storage_root": str(tmp_path / "backups"), "ragflow_dir": str(ragflow_dir(tmp_path)),
        "minio": {"enabled": False}, "mysql": {"enabled": False}, "search": {"enabled": False}})
    backed_up = cli(config, "backup", "--local", "-C", "config")
    assert backed_up.returncode == 0, said(backed_up)
    [point] = Storage(real).points("daily")
    for args in (("list",), ("verify", point.ref), ("verify", str(tmp_path / "backups" / point.ref)), ("prune",)):
        done = cli(config, *args)
        assert done.returncode == 0 and "unsafe" not in said(done), said(done)
    assert (real / "daily" / point.name / "manifest.json").is_file()
