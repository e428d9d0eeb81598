"""manifest.json: what a backup point holds, so that it is self-describing even if all else is lost."""
from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.atomic import write_bytes_atomic

FORMAT = 1
MANIFEST = "manifest.json"

ComponentStatus = Literal["ok", "failed"]
PointStatus = Literal["running", "complete", "partial", "failed"]


def now() -> datetime:
    return datetime.now(timezone.utc)


class EncryptedFile(BaseModel):
    """The ciphertext of an encrypted artifact: what verify checks without a key."""

    model_config = ConfigDict(extra="forbid")
    name: str  # <artifact>.age
    bytes: int
    sha256: str
    format: Literal["age"] = "age"


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # file name inside the point folder (of the plaintext, when encrypted)
    bytes: int  # of the plaintext
    sha256: str  # of the plaintext
    kind: Literal["gzip", "zst", "tar.gz", "json", "file"] = "file"
    encrypted: EncryptedFile | None = None  # set when only the ciphertext is stored


class ComponentRecord(BaseModel):
    """One component's outcome in one point."""

    model_config = ConfigDict(extra="forbid")
    component: str
    status: ComponentStatus
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    # What a restore must find again: rows per table, docs per index, files, keys.
    counts: dict[str, int] = Field(default_factory=dict)
    # Versions of tools and servers, snapshot names, binlog coordinates, ...
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def base_of(self) -> str | None:
        """The point whose file this record's base is, for a change point (details.change_of, written by
        actors/mysql/change_point.py: its base is a hard link to that point's dump); None otherwise."""
        change_of = self.details.get("change_of")
        ref = change_of.get("point") if isinstance(change_of, dict) else None
        return ref if isinstance(ref, str) else None

    @property
    def added_bytes(self) -> int:
        """Bytes this record adds to the storage: its artifacts less a change point's base, which is the file of
        the point it is the changes of (a hard link), counted there."""
        change_of = self.details.get("change_of")
        base = change_of.get("sha256") if isinstance(change_of, dict) else None
        linked = next((a for a in self.artifacts if base is not None and a.sha256 == base), None)
        return sum(a.bytes for a in self.artifacts if a is not linked)


class SchemaShape(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tables: int
    columns: int
    fingerprint: str  # sha256 of the sorted "table.column type" lines, first 16 hex digits


class RagflowVersion(BaseModel):
    """Read back from manifests (untrusted): unknown keys are ignored, every field may be missing."""

    model_config = ConfigDict(extra="ignore")
    image: str | None = None  # RAGFLOW_IMAGE in .env
    running_image: str | None = None  # what the app container was started from
    running_digest: str | None = None  # the registry digest, else the local image id
    schema_shape: SchemaShape | None = None

    @property
    def effective_image(self) -> str | None:
        """The running image when known (what RAGFlow really is), else the one .env names."""
        return self.running_image or self.image

    def label(self) -> str:
        """Short, for tables: the image's tag ('v0.27.0', 'nightly'); '?' when nothing was recorded."""
        image = self.effective_image
        if not image:
            return "?"
        name = image.split("@", 1)[0]
        return name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else "latest"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int = FORMAT
    point_id: str
    tier: Literal["daily", "weekly", "monthly", "safety"]
    name: str
    status: PointStatus
    created_at: datetime
    finished_at: datetime | None = None
    requested: list[str]
    components: dict[str, ComponentRecord] = Field(default_factory=dict)
    tool: dict[str, str] = Field(default_factory=lambda: {"name": "ragflow-backup", "version": package_version("ragflow-backup")})
    host: str = Field(default_factory=socket.gethostname)
    promoted_from: str | None = None
    ragflow: RagflowVersion | None = None  # the RAGFlow the point was taken from (core/ragflow_version.py)

    def decide_status(self) -> PointStatus:
        """Complete only when every requested component succeeded; never complete with one missing."""
        if any(name not in self.components for name in self.requested):
            return "running"
        ok = [name for name in self.requested if self.components[name].status == "ok"]
        if len(ok) == len(self.requested):
            return "complete"
        return "partial" if ok else "failed"

    @property
    def total_bytes(self) -> int:
        """Bytes of every artifact, a change point's base included (what a restore of the point reads)."""
        return sum(a.bytes for record in self.components.values() for a in record.artifacts)

    @property
    def added_bytes(self) -> int:
        """Bytes the point adds to the storage (ComponentRecord.added_bytes): a change point's base is not its."""
        return sum(record.added_bytes for record in self.components.values())


def write_manifest(folder: Path, manifest: Manifest) -> None:
    # Without a recorded RAGFlow the key is left out: older ragflow-backup versions still read the file.
    leave_out = {"ragflow"} if manifest.ragflow is None else None
    write_bytes_atomic(folder / MANIFEST,
                       json.dumps(manifest.model_dump(mode="json", exclude=leave_out), indent=2).encode() + b"\n")
