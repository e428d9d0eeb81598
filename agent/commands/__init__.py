"""CLI commands, one module per concern; agent/cli.py registers them."""
