"""Figure 1: the initial mirror of a MinIO store into an empty local folder, ours (`reconcile`) against
`mc mirror`, on the same private MinIO, alternating runs, median of the runs.

    python bench/mirror_initial.py [--quick] [--runs N]

(a) many small objects (1-64 KiB) in 20 buckets, (b) a few 50 MiB objects; each in its own MinIO.

More anchors per data set, so the figure says how close to the machine's limits it is: the disk (the
same files, same sizes, written in 1 MiB blocks and each fsynced, on 8 threads as our reconcile, into
the same file system: what this disk can do for write+fsync with no network, no hashing, no index);
the MD5 of as many bytes (hashlib, 1 MiB blocks, on 8 threads as our reconcile: what checking every
byte against its ETag costs at best on this machine, the ceiling of any client that does); and the
MinIO server's own CPU during each client's runs (read from /proc: the server is the other half of
every request, on the same two cores). For (b) also a GET of every object with its body discarded (the
mirror's own signed GET, on 8 threads: what the server and the loopback socket deliver with no hashing
and no disk).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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


WRITERS = 8  # as minio.reconcile_workers' default


def disk_write_fsync(items: list[tuple[str, str, int]], target: Path) -> None:
    """Write files of the items' sizes in 1 MiB blocks, each fsynced, on WRITERS threads: the disk's part
    of a mirror alone."""
    target.mkdir(parents=True)
    block = os.urandom(MiB)

    def write(numbered: tuple[int, tuple[str, str, int]]) -> None:
        number, (_, _, size) = numbered
        with open(target / f"{number}.bin", "wb") as out:
            for start in range(0, size, MiB):
                out.write(block[:min(MiB, size - start)])
            out.flush()
            os.fsync(out.fileno())

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, enumerate(items)))


def md5_same_bytes(items: list[tuple[str, str, int]]) -> None:
    """hashlib MD5 over as many bytes as the items hold, in 1 MiB blocks, one digest per item, on WRITERS
    threads (hashlib lets go of the GIL for blocks this size): the hashing part of a mirror alone."""
    block = os.urandom(MiB)

    def digest(item: tuple[str, str, int]) -> str:
        md5 = hashlib.md5()
        for start in range(0, item[2], MiB):
            md5.update(block[:min(MiB, item[2] - start)])
        return md5.hexdigest()

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(digest, items))


def get_discarded(minio: PrivateMinio, items: list[tuple[str, str, int]]) -> None:
    """GET every item with the mirror's own request (actors/minio/object_get.py), the body read in 1 MiB
    blocks and dropped, on WRITERS threads: the server's and the socket's part of a mirror alone."""
    from actors.minio.object_get import ObjectGets

    gets = ObjectGets(minio.client(), minio.settings())

    def fetch(item: tuple[str, str, int]) -> None:
        # Through the transport the mirror takes for an object of this size (ObjectGets.for_size), as it is listed
        response = gets.for_size(item[2]).get(item[0], item[1], {})
        try:
            for _ in response.stream(MiB, decode_content=False):
                pass
        finally:
            response.release_conn()

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(fetch, items))


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(name: str, items: list[tuple[str, str, int]], runs: int, env: dict[str, str], work: Path,
            label: str) -> list[Row]:
    (work / name).mkdir()
    minio = PrivateMinio(env, work / name / "data")
    minio.data.mkdir()
    minio.start()
    try:
        total = put_objects(minio.client(), items)
        anchors = ("disk", "md5", "get") if name == "b-large" else ("disk", "md5")  # get: 1b's socket limit
        runners = ("ours", "mc", *anchors)
        times: dict[str, list[float]] = {who: [] for who in runners}
        cpus: dict[str, list[float]] = {who: [] for who in runners}
        server: dict[str, list[float]] = {who: [] for who in runners}
        for run in range(runs):
            order = ("ours", "mc", *anchors) if run % 2 == 0 else ("mc", "ours", *anchors)  # neither first always
            for who in order:
                target = work / name / f"{who}-{run}"
                served = process_cpu(minio.process.pid)
                with timed() as timing:
                    if who == "ours":
                        ours(minio, target)
                    elif who == "mc":
                        mc(minio, target, env["MC"])
                    elif who == "disk":
                        disk_write_fsync(items, target)
                    elif who == "get":
                        get_discarded(minio, items)
                    else:
                        md5_same_bytes(items)
                served = process_cpu(minio.process.pid) - served
                times[who].append(timing.wall)
                cpus[who].append(timing.cpu)
                server[who].append(served)
                shutil.rmtree(target, ignore_errors=who in ("md5", "get"))  # these anchors write nothing
                print(f"  {name} run {run + 1} {who}: {timing.wall:.2f} s wall, {timing.cpu:.2f} s CPU, "
                      f"MinIO server {served:.2f} s CPU", flush=True)
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
                size, "mc mirror", note + "; client process only (the MinIO server's CPU is not counted)"),
            Row(f"1{name[0]} initial mirror {label} MinIO server CPU", median(server["ours"]), median(server["mc"]),
                "CPU s", "lower", size, "mc mirror", note + "; the private MinIO server's CPU during each client's run"),
            Row(f"1{name[0]} initial mirror {label} MiB/s against the disk", total / MiB / median(times["ours"]),
                total / MiB / median(times["disk"]), "MiB/s", "higher", size,
                f"write+fsync of the same files ({WRITERS} threads)",
                note + "; the anchor is this disk's limit for these files, so 1.0 is the physical ceiling"),
            Row(f"1{name[0]} initial mirror {label} MiB/s against MD5 of the same bytes", total / MiB / median(times["ours"]),
                total / MiB / median(times["md5"]), "MiB/s", "higher", size,
                f"hashlib MD5 of as many bytes ({WRITERS} threads)",
                note + "; MD5 on this machine: the ceiling of a client that checks every byte against its ETag"),
            Row(f"1{name[0]} MD5 of the same bytes, CPU", median(cpus["ours"]), median(cpus["md5"]), "CPU s", "lower",
                size, f"hashlib MD5 of as many bytes ({WRITERS} threads)", note + "; our client's CPU against the hashing's")]
    if "get" in anchors:
        get = f"GET of every object, body discarded ({WRITERS} threads)"
        rows += [Row(f"1{name[0]} initial mirror {label} MiB/s against GET body discarded", total / MiB / ours_s,
                     total / MiB / median(times["get"]), "MiB/s", "higher", size, get,
                     note + "; the MinIO server and the loopback socket alone: no hashing, no disk"),
                 Row(f"1{name[0]} GET body discarded, client CPU", median(cpus["ours"]), median(cpus["get"]), "CPU s",
                     "lower", size, get, note + "; our client's CPU against the bare GETs'"),
                 Row(f"1{name[0]} GET body discarded, MinIO server CPU", median(server["ours"]), median(server["get"]),
                     "CPU s", "lower", size, get, note + "; the server's CPU serving our mirror against the bare GETs")]
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
