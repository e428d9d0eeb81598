"""The work: the Dramatiq broker and actors (broker.py, tasks.py), the actions (actions/), the registry
of components (components.py) and one sub-package per component with the same face (core/face.py):
mysql, search, redis, config, minio.

Imports: `core` and `actors` modules only; never `agent` (checked by `lint-imports`). Within it, tasks
and the broker sit above the actions, the actions above the registry, the registry above the
components, and no component imports another.
"""
