"""The work: the Dramatiq broker and actors (broker.py, tasks.py), the actions (actions/), and one
module per component with the same face (backup, verify, restore): mysql, search, redis_keys,
config_files, minio_mirror and minio_restore, with their restores in *_restore.py.

Imports: `core` and `actors` modules only; never `agent` (checked by `lint-imports`). Within it,
tasks and the broker sit above the actions, and the actions above the components.
"""
