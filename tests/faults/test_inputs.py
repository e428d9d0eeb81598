"""Corrupt inputs: a manifest edited by hand, a config file broken while the agent runs."""
from __future__ import annotations

import io
import json
import signal

import pytest

from testbed.polling import wait_for
from tests.faults.harness import cli, kill, start_cli, text_of, write_config


@pytest.mark.fault("corrupt input: a manifest edited by hand (an artifact's SHA-256 changed)",
                   "verify names the artifact whose checksum differs and exits 1")
def test_a_manifest_edited_by_hand_fails_verify_naming_the_artifact(config_point):
    config, point = config_point
    manifest = json.loads((point.folder / "manifest.json").read_text())
    artifact = manifest["components"]["config"]["artifacts"][0]
    artifact["sha256"] = "0" * 64
    (point.folder / "manifest.json").write_text(json.dumps(manifest))
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 1
    assert artifact["name"] in verified.stdout and "problems found" in verified.stdout


@pytest.mark.fault("corrupt input: a manifest that is not valid JSON any more",
                   "verify and list say which manifest is unreadable and exit 1 (verify) instead of a traceback")
def test_an_unreadable_manifest_is_reported_by_verify_and_list(config_point):
    config, point = config_point
    text = (point.folder / "manifest.json").read_text()
    (point.folder / "manifest.json").write_text(text[: len(text) // 2])
    verified = cli(config, "verify", point.ref)
    assert verified.returncode == 1
    output = " ".join((verified.stdout + verified.stderr).split())
    assert "manifest" in output and point.name in output and "Traceback" not in output
    listed = cli(config, "list")
    assert "Traceback" not in listed.stdout + listed.stderr


@pytest.mark.fault("corrupt input: one point's manifest edited (not JSON, or JSON of the wrong shape) beside sound "
                   "points, then restore and the drill",
                   "restore and the drill skip that point, naming it and how to learn more (verify), and use the newest "
                   "sound one; `restore --point` naming it is refused naming its manifest.json (exit 2); no traceback")
def test_a_restore_skips_a_point_whose_manifest_was_edited_and_uses_a_sound_one(config_point):
    config, point = config_point  # daily/DAY; the same backup made weekly/ and monthly/ points too
    manifest = point.folder / "manifest.json"
    for broken in (manifest.read_text()[:40], '{"components": 5}'):
        manifest.write_text(broken)

        planned = cli(config, "restore", "-C", "config", "--dry-run")
        named = cli(config, "restore", "--point", point.ref, "-C", "config", "--dry-run")

        said = " ".join((planned.stdout + planned.stderr).split())
        assert planned.returncode == 0, said
        assert f"{point.ref} skipped: its manifest.json cannot be used" in said and f"verify {point.ref}" in said
        assert "from point weekly/" in said or "from point monthly/" in said, said
        refused = " ".join((named.stdout + named.stderr).split())
        assert named.returncode == 2 and f"{manifest} cannot be used" in refused, refused
        assert "Traceback" not in said + refused


@pytest.mark.fault("corrupt input: the mirror's index (.index.sqlite) overwritten with bytes that are not SQLite",
                   "status names the mirror folder whose index cannot be read ('file is not a database') in its "
                   "health problems and log, and shows the rest; no traceback")
def test_a_mirror_index_that_is_not_sqlite_is_named_by_status(config_point):
    config, point = config_point
    mirror = point.folder.parents[1] / "minio_mirror"
    mirror.mkdir(mode=0o700)
    (mirror / ".index.sqlite").write_bytes(b"not a database " * 400)

    status = cli(config, "status")

    said = " ".join((status.stdout + status.stderr).split())
    logged = " ".join(status.stderr.split())  # the table folds long problems; the log line keeps them whole
    assert f"mirror stats failed: DatabaseError: the mirror index in {mirror} cannot be read: file is not a database" \
        in logged, said
    assert "config" in status.stdout and "Traceback" not in said


@pytest.mark.fault("a config file with a syntax error while the agent runs",
                   "the running agent keeps its config in force and keeps mirroring; every command (and a "
                   "restart) refuses the file naming it and the YAML error's line; fixed, it works again")
def test_a_config_broken_while_the_agent_runs_keeps_the_old_in_force_and_is_reported(tmp_path, private_minio, redis_url):
    minio = private_minio.client()
    minio.make_bucket("kb-config")
    m = private_minio.settings()
    good = {
        "storage_root": str(tmp_path / "backups"), "broker": {"url": redis_url, "namespace": "broken-config"},
        "minio": {"endpoint": m.endpoint, "access_key": m.access_key, "secret_key": m.secret_key.get_secret_value(),
                  "bucket_discovery_seconds": 0.5},
        "mysql": {"enabled": False}, "search": {"enabled": False}, "config_files": {"enabled": False},
        "metrics": {"port": 0}, "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": "", "drill": ""}}
    config = write_config(tmp_path / "config.yml", good)
    log = tmp_path / "agent.log"
    agent = start_cli(config, log, "run", "--threads", "2")
    try:
        wait_for(lambda: "agent started" in text_of(log), "the agent")
        config.write_text(config.read_text() + "minio: [unclosed\n")
        data = b"written after the config broke"
        minio.put_object("kb-config", "after.txt", io.BytesIO(data), len(data))

        def mirrored():
            from core.mirror_store import MirrorStore

            root = tmp_path / "backups" / "minio_mirror"
            if not (root / ".index.sqlite").exists():
                return False
            store = MirrorStore(root)
            try:
                entry = store.entry("kb-config", "after.txt")
                return entry is not None and entry.path.read_bytes() == data
            finally:
                store.close()
        wait_for(mirrored, f"the object mirrored under the old config (log {log})", timeout=120)
        status = cli(config, "status")
        assert status.returncode != 0
        said = " ".join(status.stderr.split())
        assert f"{config} is not valid YAML" in said and "line" in said
        assert agent.poll() is None, "the running agent is unaffected"
    finally:
        kill(agent, signal.SIGTERM)
    restarted = cli(config, "agent", timeout=60)
    assert restarted.returncode != 0 and "is not valid YAML" in restarted.stderr
    write_config(config, good)
    assert cli(config, "status").returncode in (0, 1)  # readable again: status may report problems, not a config error
