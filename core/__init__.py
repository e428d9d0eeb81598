"""The floor: what both the agent and the actors stand on, and nothing that runs on its own.

The storage root and its records (points and manifests, atomic files, locks, the audit log, safe
paths, bounded readers, encryption at rest, the mirror's store and paths, the restic wrapper), the
configuration and its redaction, the clients of the services we back up, notifications, the broker's
queue inspection, the errors and result types a component shares (component.py), and what the two SQL
engines share (client tools run here or in a container, the scratch-database restore's checks and results).

Imports: the standard library, third-party libraries and other `core` modules only; never `agent`
or `actors` (checked by `lint-imports`, see pyproject.toml).
"""
