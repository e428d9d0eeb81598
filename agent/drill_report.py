"""The disaster-recovery report `drill --report FILE` writes, for the operator to keep: the point used, per component
where it was restored, what was expected and found and how long it took, the total against the requirements'
30-minute recovery time objective, the date and the versions. Markdown, or JSON when FILE ends in .json.

Names and versions come from the point's manifest (read back from the storage root, untrusted): in Markdown
they are written inside code spans with backticks removed, so they cannot add markup of their own.
"""
from __future__ import annotations

import json
import socket
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from actors.actions.drill import DrillReport
from core import ragflow_version
from core.atomic import write_bytes_atomic


def _when(moment) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def report_document(report: DrillReport) -> dict[str, Any]:
    return {
        "kind": "ragflow-backup disaster-recovery drill", "date": _when(report.started_at), "host": socket.gethostname(),
        "ok": report.ok, "point": report.point, "point_taken_at": _when(report.point_created_at),
        "ragflow": ragflow_version.describe(report.ragflow), "point_tool_version": report.tool_version,
        "tool_version": package_version("ragflow-backup"), "seconds": round(report.seconds, 1),
        "objective_seconds": report.objective_seconds, "within_objective": report.seconds <= report.objective_seconds,
        "components": [{"component": item.component, "ok": item.ok, "restored_into": item.target,
                        "expected": item.expected, "found": item.found, "seconds": round(item.seconds, 1),
                        "detail": item.detail} for item in report.components],
    }


def _code(value: Any) -> str:
    text = "-" if value is None else str(value)
    return "`" + text.replace("`", "'").replace("\n", " ").replace("|", "/") + "`"


def report_markdown(report: DrillReport) -> str:
    doc = report_document(report)
    verdict = "PASSED" if doc["ok"] else "FAILED"
    lines = [
        f"# RAGFlow disaster-recovery drill: {verdict}", "",
        f"- date: {doc['date']} on {_code(doc['host'])}",
        f"- point used: {_code(doc['point'])}, taken {doc['point_taken_at']}",
        f"- RAGFlow of the point: {_code(doc['ragflow'])}",
        f"- ragflow-backup: {doc['tool_version']} (the point was taken by {_code(doc['point_tool_version'])})",
        f"- recovery time: {doc['seconds']:.1f} s of the {doc['objective_seconds'] // 60}-minute objective (RTO): "
        + ("within it" if doc["within_objective"] else "OVER IT"), "",
        "| component | restored into | expected | found | seconds | result | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in doc["components"]:
        lines.append(f"| {item['component']} | {item['restored_into']} | {item['expected'] if item['expected'] is not None else '-'} "
                     f"| {item['found'] if item['found'] is not None else '-'} | {item['seconds']:.1f} | "
                     f"{'ok' if item['ok'] else 'FAILED'} | {_code(item['detail'])} |")
    return "\n".join(lines) + "\n"


def write_report(report: DrillReport, path: Path) -> None:
    """Written atomically (a kept report is never half a file)."""
    if path.suffix.lower() == ".json":
        data = json.dumps(report_document(report), indent=2, ensure_ascii=False) + "\n"
    else:
        data = report_markdown(report)
    write_bytes_atomic(path, data.encode())
