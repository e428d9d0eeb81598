"""Run every benchmark (one script per figure) and print one table; `make bench` calls this.

    python bench/run.py [--quick] [--only mirror_initial,mysql_dump]

Each script runs in its own process (a failure is reported and the others still run) and leaves its rows
in .bench/parts/; the merged table is printed and kept in .bench/results.json.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DIR, PARTS, RESULTS, SCRIPTS, load_rows, machine, print_table, to_markdown  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run takes a few minutes")
    parser.add_argument("--only", default="", help=f"comma-separated scripts, of: {', '.join(SCRIPTS)}")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCRIPTS)
    unknown = [name for name in chosen if name not in SCRIPTS]
    if unknown:
        parser.error(f"unknown script(s) {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    if not args.only:
        shutil.rmtree(PARTS, ignore_errors=True)  # a full run leaves no stale rows behind
        RESULTS.unlink(missing_ok=True)
    info = machine()
    print(f"benchmarks{' (quick)' if args.quick else ''} on {info['cores']} cores, {info['memory_gib']} GiB, "
          f"{info['cpu']}, load {info['load_1min']}", flush=True)
    failed, began = [], time.monotonic()
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        argv = [sys.executable, str(Path(__file__).with_name(f"{name}.py"))] + (["--quick"] if args.quick else [])
        code = subprocess.run(argv).returncode
        print(f"== {name}: {'done' if code == 0 else f'FAILED (exit {code})'} in {time.monotonic() - started:.0f} s",
              flush=True)
        if code != 0:
            failed.append(name)
    if RESULTS.is_file():
        rows = load_rows(RESULTS)
        print_table(rows, "ragflow-backup benchmarks" + (" (quick sizes)" if args.quick else ""))
        RESULTS.with_suffix(".md").write_text(to_markdown(rows))  # for docs/benchmarks.md
        print(f"kept in {RESULTS.relative_to(BENCH_DIR.parent)}; {time.monotonic() - began:.0f} s in all")
    if failed:
        print(f"failed: {', '.join(failed)} (their output is above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
