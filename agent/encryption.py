"""Encryption at rest (optional): a point's artifacts encrypted to age public keys, so the agent that
writes backups holds nothing that can read them.

After a component has written and checked its artifacts (agent/runs.py), each one becomes
`<name>.age` (temp name, fsync, rename; then the plaintext is removed). The manifest keeps the
plaintext's size and SHA-256 in the artifact and the ciphertext's in `artifact.encrypted`, so verify
checks the ciphertext without a key, and with an identity decrypts and checks the content too.

The `age` tool does the work (Debian package `age`): it streams, and the only things on its command
line are public keys and file paths (an identity file's path is not a secret).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.atomic import fsync_dir, private_dir, sha256_of, sweep_stale, temp_path
from agent.component import PermanentError
from agent.config import Settings
from agent.manifest import Artifact, EncryptedFile, read_manifest, write_manifest
from agent.points import Point, Storage

SUFFIX = ".age"
AGE = "age"


class IdentityNeeded(PermanentError):
    """The point is encrypted and no (or the wrong) identity was given."""


def _age(args: list[str], what: str) -> None:
    try:
        done = subprocess.run([AGE, *args], capture_output=True, stdin=subprocess.DEVNULL, umask=0o077)
    except FileNotFoundError:
        raise PermanentError("the age tool is not installed: `apt-get install age`") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise PermanentError(f"{what}: {message[-1] if message else f'age exited {done.returncode}'}")


def recipient_args(settings: Settings) -> list[str]:
    cfg = settings.encryption
    if not cfg.recipients:
        raise PermanentError("encryption.enabled is on but encryption.recipients is empty: add an age public key "
                             "(age1...) or a recipients file")
    args = []
    for recipient in cfg.recipients:
        if recipient.startswith(("age1", "ssh-")):
            args += ["-r", recipient]
        elif Path(recipient).is_file():
            args += ["-R", recipient]
        else:
            raise PermanentError(f"encryption.recipients: {recipient!r} is neither an age public key nor a file")
    return args


def encrypt_artifacts(settings: Settings, point: Point, artifacts: list[Artifact]) -> list[Artifact]:
    """Encrypt each (plaintext, already checked) artifact in place; return them with `encrypted` filled."""
    recipients = recipient_args(settings)
    done = []
    for artifact in artifacts:
        if artifact.kind == "json":
            # search_snapshot.json names an Elasticsearch snapshot and counts documents: retention reads
            # it to keep referenced snapshots. The snapshot's data is in the search repository, not ours.
            done.append(artifact)
            continue
        plain = point.path(artifact.name)
        final = point.folder / f"{artifact.name}{SUFFIX}"
        tmp = temp_path(final)
        try:
            _age([*recipients, "-o", str(tmp), str(plain)], f"encrypting {artifact.name}")
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            cipher = EncryptedFile(name=final.name, bytes=tmp.stat().st_size, sha256=sha256_of(tmp))
            tmp.replace(final)
            fsync_dir(point.folder)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        plain.unlink()  # only once the ciphertext is durable under its name
        fsync_dir(point.folder)
        done.append(artifact.model_copy(update={"encrypted": cipher}))
    return done


def is_encrypted(point: Point) -> bool:
    return any(a.encrypted for record in point.manifest().components.values() for a in record.artifacts)


@contextmanager
def decrypted(settings: Settings, point: Point, identity: Path | None) -> Iterator[Point]:
    """The point itself if nothing in it is encrypted; otherwise a private copy with each artifact
    decrypted (and checked against the plaintext SHA-256), removed afterwards."""
    if not is_encrypted(point):
        yield point
        return
    if identity is None:
        raise IdentityNeeded(f"{point.ref} is encrypted: pass --identity FILE (the age identity whose public key "
                             f"is in encryption.recipients)")
    if not Path(identity).is_file():
        raise IdentityNeeded(f"the identity file {identity} does not exist")
    sweep_stale(settings.storage_root / "decrypted", "*")
    scratch = private_dir(settings.storage_root / "decrypted" / secrets.token_hex(4))
    try:
        copy = private_dir(scratch / point.tier / point.name)
        for entry in point.folder.iterdir():
            if entry.is_file() and not entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                shutil.copy2(entry, copy / entry.name)
        manifest = read_manifest(point.folder)
        for record in manifest.components.values():
            for artifact in record.artifacts:
                if artifact.encrypted is None:
                    continue
                target = copy / artifact.name
                _age(["-d", "-i", str(identity), "-o", str(target), str(point.folder / artifact.encrypted.name)],
                     f"decrypting {artifact.encrypted.name} of {point.ref} with {identity}")
                if sha256_of(target) != artifact.sha256:
                    raise PermanentError(f"{artifact.name} of {point.ref} decrypts to other bytes than were backed up "
                                         f"(SHA-256 differs from the manifest)")
                artifact.encrypted = None  # the copy is a plain point to the components' verify and restore
        write_manifest(copy, manifest)
        yield Point(Storage(settings.storage_root), copy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_ciphertext(point: Point, artifact: Artifact) -> list[str]:
    """Without a key: the ciphertext is there with the size and SHA-256 the manifest recorded."""
    cipher = artifact.encrypted
    assert cipher is not None
    path = point.folder / cipher.name
    if not path.is_file():
        return [f"{cipher.name} is missing"]
    if path.stat().st_size != cipher.bytes:
        return [f"{cipher.name} has {path.stat().st_size} bytes, the manifest says {cipher.bytes}"]
    if sha256_of(path) != cipher.sha256:
        return [f"{cipher.name}: SHA-256 differs from the manifest (the file changed after the backup)"]
    return []

