"""Where an initial mirror's CPU goes: py-spy over `reconcile()` of small objects in a private MinIO, as
bench/mirror_initial.py sets it up (figure 1a).

Not a figure (bench/run.py does not run it): the profile behind figure 1a (docs/benchmarks.md, "Issue 16:
the per-object path, again"). Loads the objects, then samples this process with py-spy only while the
reconciles run (setup is not in the profile), and prints the CPU per object (user and system), the
requests sent per object, and the frames with the most samples (inclusive, each frame once per stack).
`--gil` samples only the thread holding the interpreter (where the CPU goes).

    python bench/profile_mirror.py [--objects 1000] [--rounds 2] [--gil] [--native] [--out stacks.txt]

`--large`: objects of 50 MiB as figure 1b's instead (`--objects 10` is 500 MiB); also prints MiB/s and
the CPU per GiB.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.minio.curl_get import CurlGets  # noqa: E402
from bench.common import MiB, put_objects, settings_for, small_objects  # noqa: E402
from bench.mirror_initial import process_cpu  # noqa: E402
from bench.profile_events import top  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402


class Requests:
    """Counts the HTTP requests urllib3 and libcurl (the mirror's GETs, actors/minio/curl_get.py) send,
    per method (what the MinIO server has to answer)."""

    def __init__(self) -> None:
        import urllib3

        self.counts: dict[str, int] = {}
        self.original, self.original_curl = urllib3.connectionpool.HTTPConnectionPool.urlopen, CurlGets.open
        counts, original, original_curl = self.counts, self.original, self.original_curl

        def urlopen(pool, method, url, *args, **kwargs):
            counts[method] = counts.get(method, 0) + 1
            return original(pool, method, url, *args, **kwargs)

        def curl_open(gets, *args, **kwargs):
            counts["GET (libcurl)"] = counts.get("GET (libcurl)", 0) + 1
            return original_curl(gets, *args, **kwargs)

        urllib3.connectionpool.HTTPConnectionPool.urlopen = urlopen
        CurlGets.open = curl_open

    def close(self) -> None:
        import urllib3

        urllib3.connectionpool.HTTPConnectionPool.urlopen = self.original
        CurlGets.open = self.original_curl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="reconciles into fresh folders, all sampled")
    parser.add_argument("--gil", action="store_true")
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--no-spy", action="store_true", help="only the CPU and request counts")
    parser.add_argument("--strace", action="store_true", help="count system calls (strace -c) instead of py-spy")
    parser.add_argument("--workers", type=int, default=0, help="minio.reconcile_workers (default: the config's)")
    parser.add_argument("--large", action="store_true", help="50 MiB objects (figure 1b) instead of small ones")
    parser.add_argument("--out", default="")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    from actors.minio.mirror import reconcile

    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-profile-mirror-"))
    out = Path(args.out or work / "stacks.txt").resolve()
    minio = PrivateMinio(env, work / "data")
    minio.data.mkdir()
    minio.start()
    spy = None
    try:
        items = [(f"large-{i % 2}", f"video/{i:03d}.bin", 50 * MiB) for i in range(args.objects)] if args.large \
            else small_objects(args.objects, 20)
        total = put_objects(minio.client(), items) * args.rounds
        requests = Requests()
        if args.strace:
            spy = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(os.getpid())],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)  # strace attaches
        elif not args.no_spy:
            spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            argv = [spy_bin, "record", "--pid", str(os.getpid()), "--format", "raw", "--rate", "250",
                    "--output", str(out), "--nonblocking"] + (["--gil"] if args.gil else []) + \
                   (["--native"] if args.native else [])
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)  # py-spy attaches
        before, served = resource.getrusage(resource.RUSAGE_SELF), process_cpu(minio.process.pid)
        started = time.monotonic()
        for round_ in range(args.rounds):
            settings = settings_for(minio, work / f"mirror-{round_}")
            if args.workers:
                settings.minio.reconcile_workers = args.workers
            report = reconcile(settings)
            if not report.complete:
                raise RuntimeError(f"the mirror failed: {report.errors[:3]}")
        wall = time.monotonic() - started
        after, served = resource.getrusage(resource.RUSAGE_SELF), process_cpu(minio.process.pid) - served
        requests.close()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        copied = args.objects * args.rounds
        user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        switches = (after.ru_nvcsw - before.ru_nvcsw) / copied
        print(f"{copied:,} objects copied in {wall:.2f} s; per object: client {1000 * (user + system) / copied:.3f} ms "
              f"CPU (user {1000 * user / copied:.3f}, system {1000 * system / copied:.3f}), MinIO server "
              f"{1000 * served / copied:.3f} ms; {switches:.1f} voluntary context switches; requests per object: "
              + ", ".join(f"{method} {n / copied:.3f}" for method, n in sorted(requests.counts.items())))
        if args.large:
            gib = total / (1 << 30)
            print(f"{total / MiB / wall:,.0f} MiB/s; per GiB: client {(user + system) / gib:.3f} CPU s (user "
                  f"{user / gib:.3f}, system {system / gib:.3f}), MinIO server {served / gib:.3f} CPU s; "
                  f"load average {os.getloadavg()[0]:.2f}")
        if args.strace and out.exists():
            print(out.read_text())
        elif spy is not None and out.exists():
            for samples, frame in top(out, args.top):
                print(f"{samples:7d}  {frame}")
            print(f"stacks: {out}")
    finally:
        minio.kill()
        if spy is not None and spy.poll() is None:
            spy.kill()
        for path in work.iterdir():
            if path != out:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
