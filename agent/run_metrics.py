"""Metric families about runs, read from the storage root at scrape time: backup runs per component and
result, the last run's duration, the newest point's size, the last restore drill, and build_info.

Sources, all under the storage root (untrusted: a line that is not what we wrote is skipped):
    logs/backup_history.log   one line per finished point, append-only: counters never go down
    <tier>/<point>/manifest.json   each component's start and end: the last run's duration
    logs/audit.log            the drills ("action": "drill")
No label carries a date or a point name: a series per day would grow the monitoring database without end.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import version as package_version
from pathlib import Path

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.actions.runs import describe
from core import audit
from core.points import Storage

log = logging.getLogger("ragflow_backup.metrics")

PREFIX = "ragflow_backup_"
RESULTS = ("ok", "failed")  # a component's outcome in a point
MAX_HISTORY_LINE = 64 * 1024  # our lines are well under 1 KiB; longer ones were not written by us


def history_counts(storage: Storage) -> Counter[tuple[str, str]]:
    """(component, result) -> finished runs in the history log."""
    counts: Counter[tuple[str, str]] = Counter()
    path = storage.history_log
    if not path.is_file():
        return counts
    with open(path, "rb") as handle:
        for raw in handle:
            if len(raw) > MAX_HISTORY_LINE:
                continue
            try:
                line = json.loads(raw)
                components = line["components"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(components, dict):
                continue
            for component, result in components.items():
                if isinstance(component, str) and result in RESULTS:
                    counts[(component, result)] += 1
    return counts


def last_durations(storage: Storage) -> tuple[dict[tuple[str, str], float], int | None]:
    """(component, result) -> seconds of the newest such run, and the newest point's bytes (None: no point)."""
    durations: dict[tuple[str, str], tuple[datetime, float]] = {}
    newest: tuple[datetime, int] | None = None
    for point in storage.points():
        try:
            manifest = point.manifest()
        except Exception:  # noqa: BLE001 - deleted meanwhile, or unreadable: `verify` and `list` report it
            continue
        if newest is None or manifest.created_at > newest[0]:
            newest = (manifest.created_at, manifest.added_bytes)
        for name, record in manifest.components.items():
            key = (name, record.status)
            if key not in durations or record.finished_at > durations[key][0]:
                durations[key] = (record.finished_at, record.seconds)
    return {key: seconds for key, (_, seconds) in durations.items()}, newest[1] if newest else None


def last_drill(storage_root: Path) -> dict | None:
    found = None
    for line in audit.read(storage_root, action="drill"):
        if line.get("result") in ("ok", "failed"):
            found = line
    return found


def run_metrics(storage: Storage) -> Iterator[Metric]:
    """The families; a source that cannot be read is logged and left out (the rest of the scrape stands)."""
    try:
        counts = history_counts(storage)
        runs = CounterMetricFamily(PREFIX + "component_runs", "Finished backup runs per component and result.",
                                   labels=["component", "result"])
        for component in sorted({component for component, _ in counts}):
            for result in RESULTS:
                runs.add_metric([component, result], float(counts[(component, result)]))
        yield runs
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics: the backup history is unreadable: %s", describe(exc))
    try:
        durations, newest_bytes = last_durations(storage)
        seconds = GaugeMetricFamily(PREFIX + "component_last_run_duration_seconds",
                                    "Duration of the newest backup run per component and result.",
                                    labels=["component", "result"])
        for (component, result), value in sorted(durations.items()):
            seconds.add_metric([component, result], value)
        yield seconds
        if newest_bytes is not None:
            yield GaugeMetricFamily(PREFIX + "last_point_bytes", "Bytes the newest backup point adds (a change point's base counts with its full point).",
                                    value=float(newest_bytes))
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics: the points are unreadable: %s", describe(exc))
    try:
        drill = last_drill(storage.root)
        if drill is not None:
            yield GaugeMetricFamily(PREFIX + "drill_last_success", "1 when the last restore drill passed, else 0.",
                                    value=1.0 if drill["result"] == "ok" else 0.0)
            yield GaugeMetricFamily(PREFIX + "drill_last_duration_seconds", "Duration of the last restore drill.",
                                    value=float(drill.get("seconds") or 0.0))
            yield GaugeMetricFamily(PREFIX + "drill_last_timestamp_seconds", "When the last restore drill ended.",
                                    value=datetime.fromisoformat(drill["time"]).timestamp())
    except Exception as exc:  # noqa: BLE001
        log.warning("metrics: the audit log is unreadable: %s", describe(exc))


def build_info() -> Metric:
    info = GaugeMetricFamily(PREFIX + "build_info", "Always 1; the version label says which ragflow-backup runs.",
                             labels=["version"])
    info.add_metric([package_version("ragflow-backup")], 1.0)
    return info
