"""What `upgrade rollback` says afterwards: the result checked against the point's manifest, one row per thing
checked, and the RAGFlow containers to recreate for the files the rollback put back; and the points `upgrade
prepare` took (for `upgrade status`, `rollback` and the status page).

The manifest is read back from the storage root (untrusted): its numbers are compared, never executed; the
names it holds are printed escaped by the caller.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actors.actions.retention import pin_of
from actors.config.restore import ConfigRestoreResult
from actors.minio.plan import MinioRestoreResult
from actors.mysql.restore import MySQLRestoreResult
from actors.redis.exact import RestoredKeys
from actors.search.restore import SearchRestoreResult
from core.manifest import Manifest, SchemaShape
from core.points import Point, Storage

ENV = ".env"
PREFIX = "pre-upgrade-"  # the pin `upgrade prepare` gives its point
# RAGFlow's docker/.env keys → the compose services (docker/docker-compose-base.yml, docker-compose.yml) that read
# them; a key of no listed prefix is read by the app container.
SERVICE_OF_PREFIX = (("MYSQL_", "mysql"), ("EXPOSE_MYSQL_PORT", "mysql"), ("MINIO_", "minio"), ("REDIS_", "redis"),
                     ("ES_", "es01"), ("ELASTIC_", "es01"), ("STACK_VERSION", "es01"), ("OS_", "opensearch01"),
                     ("OPENSEARCH_", "opensearch01"), ("INFINITY_", "infinity"))


@dataclass(frozen=True)
class CheckRow:
    component: str
    what: str
    expected: str
    found: str
    ok: bool


def _counted(component: str, what: str, where: str, expected: dict[str, int], found: dict[str, int]) -> CheckRow:
    differ = sorted(name for name in set(expected) | set(found) if expected.get(name, 0) != found.get(name, 0))
    detail = f" (differ: {', '.join(differ[:5])})" if differ else ""
    return CheckRow(component, f"{what} in {len(expected)} {where}", str(sum(expected.values())),
                    f"{sum(found.values())}{detail}", not differ)


def env_sha256(ragflow_dir: Path) -> str | None:
    path = Path(ragflow_dir) / ENV
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def result_rows(manifest: Manifest, results: dict[str, Any], ragflow_dir: Path | None,
                schema_now: SchemaShape | None) -> list[CheckRow]:
    """Each restored component's own recount against the manifest, `.env`'s bytes, and the schema's stamp."""
    rows: list[CheckRow] = []
    for name, result in results.items():
        rows += removals(name, result)
        if isinstance(result, MySQLRestoreResult):
            rows.append(_counted(name, "rows", "tables", result.expected, result.found))
        elif isinstance(result, SearchRestoreResult):
            rows.append(_counted(name, "chunks", "indices", result.expected, result.found))
        elif isinstance(result, MinioRestoreResult):
            rows.append(_counted(name, "objects", "buckets", result.expected, result.found))
            if result.problems:
                rows.append(CheckRow(name, "problems", "none", "; ".join(result.problems[:3]), False))
        elif isinstance(result, ConfigRestoreResult):
            rows.append(CheckRow(name, "files", str(result.expected), str(result.found),
                                 result.found == result.expected and not result.problems))
        elif name == "redis" and isinstance(result, int):
            record = manifest.components.get("redis")
            expected = (record.counts.get("keys") if record else None)
            rows.append(CheckRow(name, "keys", str(expected), str(result), expected == result))
    config = manifest.components.get("config")
    if "config" in results and config is not None and ragflow_dir is not None:
        kept = next((f.get("sha256") for f in config.details.get("files", []) if isinstance(f, dict)
                     and f.get("path") == ENV), None)
        if kept is not None:
            now = env_sha256(ragflow_dir)
            rows.append(CheckRow("config", ".env bytes (SHA-256)", str(kept)[:16], (now or "missing")[:16], now == kept))
    taken = manifest.ragflow.schema_shape if manifest.ragflow else None
    if "mysql" in results and taken is not None:
        found = f"#{schema_now.fingerprint} ({schema_now.tables} tables)" if schema_now else "not readable"
        rows.append(CheckRow("mysql", "schema stamp", f"#{taken.fingerprint} ({taken.tables} tables)", found,
                             schema_now is not None and schema_now.fingerprint == taken.fingerprint))
    return rows


def removals(component: str, result: Any) -> list[CheckRow]:
    """What an exact restore removed because the point does not have it ("removed 3 keys created after the point"),
    and what it left (created after the safety point, or not RAGFlow's by name). A row only where there was any."""
    removed, left, one, many = 0, 0, "", ""
    if isinstance(result, SearchRestoreResult):
        removed, left, one, many = len(result.removed), len(result.left), "index", "indices"
    elif isinstance(result, MinioRestoreResult):
        removed, left, one, many = len(result.removed_buckets), len(result.left_buckets), "bucket", "buckets"
    elif isinstance(result, RestoredKeys):
        removed, left, one, many = result.removed, result.left, "key", "keys"
    if not removed and not left:
        return []
    found = f"removed {removed} {one if removed == 1 else many} created after the point"
    if left:
        found += f"; left {left} (created after the safety point, or not RAGFlow's)"
    return [CheckRow(component, f"{many} not in the point", "none left", found, not left)]


def services_to_recreate(before: dict[str, str], after: dict[str, str], written: list[str]) -> list[str]:
    """The compose services whose settings the rollback changed: by the `.env` keys that differ, and every service
    when a compose file was put back. Empty: nothing to recreate."""
    device = after.get("DEVICE") or "cpu"
    app = f"ragflow-{device if device in ('cpu', 'gpu') else 'cpu'}"
    if any(Path(path).name.startswith("docker-compose") for path in written):
        return ["(every service: a compose file changed)"]
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    services = []
    for key in changed:
        service = next((name for prefix, name in SERVICE_OF_PREFIX if key.startswith(prefix)), app)
        if service not in services:
            services.append(service)
    if written and app not in services and any(path != ENV for path in written):
        services.append(app)  # service_conf.yaml.template, nginx/ ...: read by the app container
    return services


def prepared_points(storage: Storage) -> list[tuple[datetime, Point, str]]:
    """(created_at, point, pin) of every complete point pinned by `upgrade prepare`, newest first."""
    found = []
    for point in storage.points():
        pin = pin_of(point)
        if not pin or not pin.startswith(PREFIX):
            continue
        try:
            manifest = point.manifest()
        except Exception:  # noqa: BLE001 - unusable manifests are `list`'s and `verify`'s to report
            continue
        if manifest.status == "complete":
            found.append((manifest.created_at, point, pin))
    return sorted(found, key=lambda item: item[0], reverse=True)


def prepared_line(storage: Storage) -> str | None:
    """'upgrade prepared <time> (<pin>): way back = ragflow-backup upgrade rollback --point <ref>' for the newest
    prepared point, or None (`status` and the status page show it; the caller masks and escapes it)."""
    prepared = prepared_points(storage)
    if not prepared:
        return None
    created, point, pin = prepared[0]
    return (f"upgrade prepared {created.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({pin}): way back = "
            f"ragflow-backup upgrade rollback --point {point.ref}")
