"""The archive in numbers and moments, for health, metrics, `status` and `timeline`: read from the index, so a
command without the agent sees the same as the agent (which adds its live lag)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from actors.binlog.index import ArchiveIndex, load_index, span_of
from core.config import Settings
from core.pitr import Span


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


def mysql_spans(index: ArchiveIndex, points: list[tuple[datetime, dict[str, Any]]]) -> list[Span]:
    """The stretches MySQL can be restored to any second of: from the oldest point whose dump coordinates (a
    manifest's `binlog`, untrusted) the archive continues, to the end of that run of files; one per run."""
    spans = []
    for run in index.runs():
        span = span_of(run)
        sizes = {entry.name: entry.size for entry in run}
        starts = [moment for moment, coordinates in points
                  if isinstance(coordinates.get("file"), str) and isinstance(coordinates.get("position"), int)
                  and sizes.get(coordinates["file"], -1) >= coordinates["position"]]
        if span is not None and starts and min(starts) <= span.end:
            spans.append(Span(start=min(starts), end=span.end))
    return spans
