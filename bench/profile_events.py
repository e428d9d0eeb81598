"""Where a burst of events goes in the agent: py-spy over `ragflow-backup run` while N objects are put at once.

Not a figure (bench/run.py does not run it): the profile behind figures 3 and 7 (docs/benchmarks.md).
Prints the agent's CPU per event and how long the burst took to be mirrored, and writes py-spy's raw
(collapsed) stacks, summed per frame by --top. `--gil` samples only the thread holding the interpreter
(where the CPU goes); `--idle` every thread, waiting included (where the wall time goes).

    python bench/profile_events.py [--events 600] [--gil | --idle] [--out stacks.txt] [--unpaced] [--buckets 20]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import put_objects, small_objects, start_agent, tree_usage  # noqa: E402
from core.mirror_store import MirrorStore  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed.leases import leased_redis_db, redis_url  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402


def mirrored(index: Path) -> int:
    if not index.exists():
        return 0
    store = MirrorStore(index.parent)
    try:
        return store.stats()["objects"]
    finally:
        store.close()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, e.g. the MinIO server taking the puts."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def top(stacks: Path, count: int) -> list[tuple[int, str]]:
    """Samples per frame, a frame counted once per stack (inclusive)."""
    frames: collections.Counter[str] = collections.Counter()
    for line in stacks.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        for frame in set(stack.split(";")[1:]):
            frames[re.sub(r"\(/.*/", "(", frame)] += int(samples)
    return [(n, frame) for frame, n in frames.most_common(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=600)
    parser.add_argument("--gil", action="store_true")
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--seconds", type=int, default=30, help="how long py-spy samples")
    parser.add_argument("--out", default="")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--unpaced", action="store_true", help="minio.cpu_budget_percent 0")
    parser.add_argument("--buckets", type=int, default=20, help="buckets the burst is spread over (figure 3: 1)")
    args = parser.parse_args()
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-profile-"))
    (work / "minio").mkdir()
    minio = PrivateMinio(env, work / "minio")
    minio.start()
    agent = None
    stacks = Path(args.out) if args.out else work / "stacks.txt"
    try:
        put_objects(minio.client(), small_objects(20, 20))
        with leased_redis_db(env) as db:
            agent = start_agent(work, redis_url(env, db), minio, {"cpu_budget_percent": 0} if args.unpaced else None)
            index = work / "backups" / "minio_mirror" / ".index.sqlite"
            while mirrored(index) < 20:
                time.sleep(0.5)
            time.sleep(3)
            mode = ["--gil"] if args.gil else ["--idle"] if args.idle else []
            spy = subprocess.Popen([spy_bin, "record", "-p", str(agent.pid), "-d", str(args.seconds), "-f", "raw",
                                    "-o", str(stacks), "-r", str(args.rate), "--nonblocking", *mode],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            late = [(bucket, f"late/{key}", size) for bucket, key, size in small_objects(args.events, args.buckets, seed=7)]
            cpu0, _ = tree_usage(agent.pid)
            server0 = process_cpu(minio.process.pid)
            began = time.monotonic()
            put_objects(minio.client(), late)
            puts_took = time.monotonic() - began
            while mirrored(index) < 20 + args.events and time.monotonic() - began < 900:
                time.sleep(0.2)
            cpu1, _ = tree_usage(agent.pid)
            took, server = time.monotonic() - began, process_cpu(minio.process.pid) - server0
            spy.wait()
        print(f"{args.events} events mirrored {took:.1f} s after the first put; agent CPU {cpu1 - cpu0:.2f} s, "
              f"{(cpu1 - cpu0) / args.events * 1000:.2f} ms per event; the puts took {puts_took:.1f} s, "
              f"the MinIO server {server:.2f} CPU s meanwhile (puts, events and our GETs)")
        log_text = (work / "agent.log").read_text(errors="replace")
        handed = log_text.count("queued for the workers")
        print(f"batches the agent's own pool (run: agent/local_mirror.py) handed to the workers through Redis: {handed}")
        if stacks.exists():
            for samples, frame in top(stacks, args.top):
                print(f"{samples:7d}  {frame}")
    finally:
        if agent is not None:
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait(60)
        minio.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
