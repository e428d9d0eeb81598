"""Figure 2: a reconcile that finds nothing to do, over many objects: ours (`reconcile` on a mirror that is
complete) against `mc mirror` run again over its own complete copy of the same data, alternating runs.

    python bench/reconcile_nochange.py [--quick] [--runs N]
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Row, mc_env, median, print_table, publish, put_objects, run_quiet, timed  # noqa: E402
from bench.mirror_initial import mc, ours  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 objects, 1 run")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    count = 10_000 if args.quick else 100_000
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-reconcile-"))
    minio = PrivateMinio(env, work / "data")
    minio.data.mkdir()
    minio.start()
    try:
        rng = random.Random(2)
        # What is measured is per-object work (listing, comparing), so the objects are kept small (0.5-4 KiB).
        items = [(f"kb-{i % 20:02d}", f"doc-{i // 100:05d}/{i:07d}.bin", rng.randint(512, 4096)) for i in range(count)]
        total = put_objects(minio.client(), items, threads=16)
        print(f"  seeded {count:,} objects", flush=True)
        with timed() as first_ours:
            ours(minio, work / "ours")
        with timed() as first_mc:
            mc(minio, work / "mc", env["MC"])
        print(f"  first copies: ours {first_ours.wall:.1f} s, mc {first_mc.wall:.1f} s", flush=True)
        times: dict[str, list[float]] = {"ours": [], "mc": []}
        cpus: dict[str, list[float]] = {"ours": [], "mc": []}
        for run in range(runs):
            for who in (("ours", "mc") if run % 2 == 0 else ("mc", "ours")):
                with timed() as timing:
                    if who == "ours":
                        ours(minio, work / "ours")
                    else:
                        run_quiet([env["MC"], "mirror", "--quiet", "bench/", str(work / "mc")], env=mc_env(minio))
                times[who].append(timing.wall)
                cpus[who].append(timing.cpu)
                print(f"  run {run + 1} {who}: {timing.wall:.2f} s wall, {timing.cpu:.2f} s CPU", flush=True)
    finally:
        minio.kill()
        shutil.rmtree(work, ignore_errors=True)
    size = f"{count:,} objects in 20 buckets, {total / 2**20:,.0f} MiB, nothing changed"
    note = f"median of {runs} alternating runs" + ("" if runs >= 3 else " (quick: fewer than 3)")
    rows = [Row("2 no-change reconcile wall", median(times["ours"]), median(times["mc"]), "s", "lower", size,
                "mc mirror (again)", note),
            Row("2 no-change reconcile objects/s", count / median(times["ours"]), count / median(times["mc"]),
                "objects/s", "higher", size, "mc mirror (again)", note),
            Row("2 no-change reconcile CPU", median(cpus["ours"]), median(cpus["mc"]), "CPU s", "lower", size,
                "mc mirror (again)", note + "; client process only"),
            Row("2 first full copy (setup)", first_ours.wall, first_mc.wall, "s", "lower", size, "mc mirror",
                "one run each, before the no-change runs")]
    publish("reconcile_nochange", rows)
    print_table(rows, "figure 2: no-change reconcile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
