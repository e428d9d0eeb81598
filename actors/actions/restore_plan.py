"""What a restore will do (`Plan`): made by actors/actions/restore.py, checked before anything changes by
actors/actions/restore_checks.py, shown by the CLI with `lines()`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actors.actions.restore_at import SearchFrom
from core.config import Settings
from core.pitr import ReplayPlan
from core.points import Point


@dataclass
class Plan:
    point: Point | None
    at: datetime  # MinIO's moment
    components: list[str]
    kb: str | None = None
    # Scratch targets (drills): {"mysql": database, "search": index prefix, "minio": bucket prefix, "config": dir}
    targets: dict[str, Any] = field(default_factory=dict)
    # Whole state (`upgrade rollback`, `restore --exact`): also remove what the point does not have (Redis keys,
    # RAGFlow's indices and buckets), only what the safety point holds (core/face.py's RestoreRequest).
    exact: bool = False
    # From another installation's root (core/source_root.py): the config as written, whose own mirror (not the
    # source's) says what this MinIO held before, should the restore have to be rolled back.
    rollback_settings: Settings | None = None
    # restore --at (actors/actions/restore_at.py): the binlog replay, the config commit, each component's moment
    replay: ReplayPlan | None = None
    config_commit: str | None = None
    moments: dict[str, str] = field(default_factory=dict)
    reparse_changed: bool = False  # mark the documents changed after the search snapshot for RAGFlow to parse
    search_from: SearchFrom | None = None  # restore --at: an interval snapshot newer than the point's

    def lines(self) -> list[str]:
        point = self.point.ref if self.point else "none (objects only)"
        what = f"knowledge base {self.kb}" if self.kb else "everything they hold"
        out = [f"from point {point}; objects as they were at {self.at.isoformat(timespec='seconds')}",
               f"components: {', '.join(self.components)} ({what})"]
        if self.point:
            manifest = self.point.manifest()
            for name in self.components:
                record = manifest.components.get(name)
                if record:
                    out.append(f"  {name}: {sum(a.bytes for a in record.artifacts)} bytes, "
                               f"{sum(record.counts.values())} rows/docs/keys/files in {len(record.counts)}")
                if record and name == "postgres" and self.at != manifest.created_at:  # no WAL archive to replay
                    out.append(f"  postgres comes back as it was at the point's time "
                               f"{manifest.created_at.isoformat(timespec='seconds')}, not at --at (no WAL archive)")
        if self.moments:
            out.append("each component comes back to:")
            out += [f"  {name}: {self.moments[name]}" for name in self.components if name in self.moments]
        if {"mysql", "search"} <= set(self.components) and not self.targets:
            out.append("then the chunks of documents the restored MySQL does not have are removed from the restored "
                       "indices (counted per knowledge base in the report)")
        out.append("before anything is replaced, a safety point of the same components is taken")
        if self.exact:
            out.append("exact: Redis keys, RAGFlow's indices and buckets the point does not have are removed "
                       "(the safety point keeps them)")
        return out


__all__ = ["Plan"]
