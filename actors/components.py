"""The one registry of components: backup runs, the workers, restore, the drill, doctor, status and
metrics all read it. A new component is one sub-package of actors/ with a `COMPONENT` (the face in
core/face.py) and one entry here."""
from __future__ import annotations

from actors import binlog, config, minio, mysql, postgres, redis, search
from core.config import Settings
from core.face import Component

# In the order backups run and reports list them.
COMPONENTS: dict[str, Component] = {c.name: c for c in (
    mysql.COMPONENT, postgres.COMPONENT, search.COMPONENT, redis.COMPONENT, config.COMPONENT, minio.COMPONENT,
    binlog.COMPONENT,
)}
IN_POINTS = [name for name, c in COMPONENTS.items() if c.in_points]  # what a backup run can be asked for
RESTORABLE = [name for name, c in COMPONENTS.items() if c.restorable]  # what a restore (or a drill) restores


def component(name: str) -> Component:
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {name!r}; choose from {', '.join(COMPONENTS)}")
    return COMPONENTS[name]


def enabled_components(settings: Settings) -> list[str]:
    """The components a backup run backs up (the MinIO mirror is kept by events, not by runs)."""
    return [name for name, c in COMPONENTS.items() if c.in_points and c.enabled(settings)]
