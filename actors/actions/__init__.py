"""Actions: what a command or a scheduled job asks for, done over the components.

A backup run (runs.py), verify, restore with its safety point and rollback (restore.py,
restore_checks.py), the drill, retention and the offsite copy. Like borgmatic's actions, they sit
between the commands (agent/commands/) and the tools (the components in actors/ and the floor in core/).

Imports: `core`, the registry of components (actors/components.py) and the component packages; never
`agent`, never `actors.tasks` or `actors.broker` (checked by `lint-imports`).
"""
