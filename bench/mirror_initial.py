"""Figure 1: the initial mirror of a MinIO store into an empty local folder, ours (`reconcile`) against
`mc mirror`, on the same private MinIO, alternating runs, median of the runs.

    python bench/mirror_initial.py [--quick] [--runs N]

(a) many small objects (1-64 KiB) in 20 buckets, (b) a few 50 MiB objects; each in its own MinIO.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    MiB,
    Row,
    mc_env,
    median,
    print_table,
    publish,
    put_objects,
    run_quiet,
    settings_for,
    small_objects,
    timed,
)
from testbed import env as testbed_env  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402


def ours(minio: PrivateMinio, target: Path) -> None:
    from actors.minio.mirror import reconcile

    report = reconcile(settings_for(minio, target))
    if not report.complete:
        raise RuntimeError(f"our mirror failed: {report.errors[:3]}")


def mc(minio: PrivateMinio, target: Path, mc_bin: str) -> None:
    target.mkdir(parents=True)
    run_quiet([mc_bin, "mirror", "--quiet", "bench/", str(target)], env=mc_env(minio))


def compare(name: str, items: list[tuple[str, str, int]], runs: int, env: dict[str, str], work: Path,
            label: str) -> list[Row]:
    (work / name).mkdir()
    minio = PrivateMinio(env, work / name / "data")
    minio.data.mkdir()
    minio.start()
    try:
        total = put_objects(minio.client(), items)
        times: dict[str, list[float]] = {"ours": [], "mc": []}
        cpus: dict[str, list[float]] = {"ours": [], "mc": []}
        for run in range(runs):
            order = ("ours", "mc") if run % 2 == 0 else ("mc", "ours")  # alternate: neither always goes first
            for who in order:
                target = work / name / f"{who}-{run}"
                with timed() as timing:
                    if who == "ours":
                        ours(minio, target)
                    else:
                        mc(minio, target, env["MC"])
                times[who].append(timing.wall)
                cpus[who].append(timing.cpu)
                shutil.rmtree(target)
                print(f"  {name} run {run + 1} {who}: {timing.wall:.2f} s wall, {timing.cpu:.2f} s CPU", flush=True)
    finally:
        minio.kill()
    ours_s, mc_s = median(times["ours"]), median(times["mc"])
    size = f"{label}: {len(items):,} objects, {total / MiB:,.0f} MiB"
    note = f"median of {runs} alternating runs" + ("" if runs >= 3 else " (quick: fewer than 3)")
    rows = [Row(f"1{name[0]} initial mirror {label} objects/s", len(items) / ours_s, len(items) / mc_s, "objects/s",
                "higher", size, "mc mirror", note),
            Row(f"1{name[0]} initial mirror {label} MiB/s", total / MiB / ours_s, total / MiB / mc_s, "MiB/s", "higher",
                size, "mc mirror", note),
            Row(f"1{name[0]} initial mirror {label} CPU", median(cpus["ours"]), median(cpus["mc"]), "CPU s", "lower",
                size, "mc mirror", note + "; client process only (the MinIO server's CPU is not counted)")]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 small objects and 5 large ones, 1 run each")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    small_count, large_count = (1_000, 5) if args.quick else (10_000, 20)
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-mirror-"))
    try:
        large = [(f"large-{i % 2}", f"video/{i:03d}.bin", 50 * MiB) for i in range(large_count)]
        rows = compare("a-small", small_objects(small_count, 20), runs, env, work, "small")
        rows += compare("b-large", large, runs, env, work, "50 MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish("mirror_initial", rows)
    print_table(rows, "figure 1: initial mirror")
    return 0


if __name__ == "__main__":
    sys.exit(main())
