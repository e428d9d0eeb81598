"""The archive in numbers and moments, for health, metrics, `status` and `timeline`: read from the index, so a
command without the agent sees the same as the agent (which adds its live lag)."""
from __future__ import annotations

from typing import Any

from actors.binlog.index import ArchiveIndex, load_index
from core.config import Settings


def archive_summary(settings: Settings, index: ArchiveIndex | None = None) -> dict[str, Any]:
    """files, bytes, spans (earliest and latest restorable second of each), gaps (each with its reason)."""
    index = index if index is not None else load_index(settings.layout)
    spans = index.spans()
    return {
        "files": len(index.files),
        "bytes": sum(entry.size for entry in index.files),
        "newest_file": index.files[-1].name if index.files else None,
        "spans": [{"start": span.start.isoformat(timespec="seconds"), "end": span.end.isoformat(timespec="seconds")}
                  for span in spans],
        "gaps": [{"before": gap.before, "missing": gap.missing[:10], "reason": gap.reason,
                  "detected_at": gap.detected_at.isoformat(timespec="seconds")} for gap in index.gaps],
    }
