"""Encryption at rest (optional): a point's artifacts encrypted to age public keys, so the agent that
writes backups holds nothing that can read them.

After a component has written and checked its artifacts (actors/actions/runs.py), each one becomes
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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.atomic import FILE_MODE, digest_of_file, fsync_dir, sha256_of, sweep_stale, temp_path
from core.component import PermanentError
from core.config import Settings
from core.manifest import MANIFEST as MANIFEST_NAME
from core.manifest import Artifact, ComponentRecord, EncryptedFile, write_manifest
from core.points import Point, Storage
from core.safe_paths import UnsafePath, entry_problem, plain_name

SUFFIX = ".age"
AGE = "age"


class IdentityNeeded(PermanentError):
    """The point is encrypted and no (or the wrong) identity was given."""


def _age(args: list[str], what: str, stdin=subprocess.DEVNULL) -> None:
    try:
        done = subprocess.run([AGE, *args], capture_output=True, stdin=stdin, umask=0o077)
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


def check_files(point: Point, records: Iterable[ComponentRecord] | None = None) -> list[str]:
    """Every file the records (default: the manifest's) name (artifacts, `.age` copies) as a plain name
    of a regular file in the point folder: a path, symlink, FIFO or device there is a problem, named;
    nothing is followed."""
    records = point.manifest().components.values() if records is None else records
    problems, seen = [], set()
    for record in records:
        for artifact in record.artifacts:
            name = artifact.encrypted.name if artifact.encrypted else artifact.name
            try:
                plain_name(artifact.name, "artifact name", point.folder / MANIFEST_NAME)
                if artifact.name in seen:
                    raise UnsafePath(point.folder / MANIFEST_NAME, f"names the artifact {artifact.name!r} twice")
                seen.add(artifact.name)
                with point.open(name):
                    pass
            except FileNotFoundError:
                continue  # missing: verify says so; a restore's component refuses it
            except UnsafePath as exc:
                problems.append(str(exc))
    return problems


@contextmanager
def decrypted(settings: Settings, point: Point, identity: Path | None) -> Iterator[Point]:
    """The point itself if nothing in it is encrypted; otherwise a private copy with each artifact
    decrypted (and checked against the plaintext SHA-256), removed afterwards. Either way every file
    the manifest names must be a plain name of a regular file in the point (see check_files)."""
    manifest = point.manifest()
    problems = check_files(point, manifest.components.values())
    if problems:
        raise UnsafePath(point.folder, "is not used: " + "; ".join(problems[:5]))
    if not any(a.encrypted for record in manifest.components.values() for a in record.artifacts):
        yield point
        return
    if identity is None:
        raise IdentityNeeded(f"{point.ref} is encrypted: pass --identity FILE (the age identity whose public key "
                             f"is in encryption.recipients)")
    if not Path(identity).is_file():
        raise IdentityNeeded(f"the identity file {identity} does not exist")
    layout = settings.layout
    scratch_name = secrets.token_hex(4)
    layout.decrypted_copy()
    sweep_stale(layout.decrypted, "*")
    scratch = layout.decrypted_copy(scratch_name)
    try:
        copy = layout.decrypted_copy(scratch_name, plain_name(point.tier, "tier", point.folder),
                                     plain_name(point.name, "point name", point.folder))
        for entry in sorted(point.folder.iterdir()):
            if entry.name.endswith(SUFFIX) or entry.name.startswith(".") or entry_problem(entry, want_dir=False):
                continue  # symlinks, FIFOs and folders are never copied
            with point.open(entry.name, "file") as source, open(copy / entry.name, "xb", opener=_private) as target:
                shutil.copyfileobj(source, target)
        for record in manifest.components.values():
            for artifact in record.artifacts:
                if artifact.encrypted is None:
                    continue
                target = copy / artifact.name
                target.unlink(missing_ok=True)  # a plain file of the same name copied above
                with point.open(artifact.encrypted.name, "encrypted artifact") as cipher:
                    _age(["-d", "-i", str(identity), "-o", str(target)],
                         f"decrypting {artifact.encrypted.name} of {point.ref} with {identity}", stdin=cipher)
                os.chmod(target, FILE_MODE)
                if sha256_of(target) != artifact.sha256:
                    raise PermanentError(f"{artifact.name} of {point.ref} decrypts to other bytes than were backed up "
                                         f"(SHA-256 differs from the manifest)")
                artifact.encrypted = None  # the copy is a plain point to the components' verify and restore
        write_manifest(copy, manifest)
        yield Point(Storage(settings.storage_root), copy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)  # a decrypted copy's files are 0600 like the point's


def check_ciphertext(point: Point, artifact: Artifact) -> list[str]:
    """Without a key: the ciphertext is there with the size and SHA-256 the manifest recorded."""
    cipher = artifact.encrypted
    assert cipher is not None
    try:
        plain_name(artifact.name, "artifact name", point.folder / MANIFEST_NAME)  # decrypted under it later
        with point.open(cipher.name, "encrypted artifact") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != cipher.bytes:
                return [f"{cipher.name} has {size} bytes, the manifest says {cipher.bytes}"]
            if digest_of_file(handle) != cipher.sha256:
                return [f"{cipher.name}: SHA-256 differs from the manifest (the file changed after the backup)"]
    except FileNotFoundError:
        return [f"{cipher.name} is missing"]
    except UnsafePath as exc:
        return [str(exc)]
    return []

