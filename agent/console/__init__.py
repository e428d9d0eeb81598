"""The operator's console: a read-only status page with history, served on the metrics port (agent/metrics.py)."""
