"""What the operator runs: the command line (cli.py, commands/), the always-on agent (agent.py) with
its event sources (sources/) and scheduler, the health and metrics server, status and doctor.

Imports: anything in `actors` and `core`; nothing imports `agent` (checked by `lint-imports`).
"""
