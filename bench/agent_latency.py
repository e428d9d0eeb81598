"""Figure 3: event -> mirrored latency, ours (`ragflow-backup run`: agent + workers) and `mc mirror --watch`
side by side on the same private MinIO and the same stream of puts.

Both are measured the same way: from the moment each put returned to the moment its file is seen, whole,
at its place in the mirror (a poller stats every pending path every 20 ms). A burst of small puts (8 at
a time), after a steady 20 puts/s and a quiet minute (not in --quick, whose phases fit one minute's share
together): the mirror's budget (minio.cpu_budget_percent; core/cpu_budget.py) is a share of any minute,
so the burst meets a window clear of the steady phase's spending, and the steady phase does not pay back
what the burst took (in the other order it would).

    python bench/agent_latency.py [--quick] [--cpu-budget PERCENT]
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Row, mc_env, percentile, print_table, publish, start_agent  # noqa: E402
from core.cpu_budget import WINDOW_SECONDS  # noqa: E402
from core.mirror_store import MirrorStore  # noqa: E402
from testbed import env as testbed_env  # noqa: E402
from testbed.leases import leased_redis_db, redis_url  # noqa: E402
from testbed.minio_server import PrivateMinio  # noqa: E402

PAYLOAD = 4096


class Watcher:
    """Notes when each expected file first exists with its full size, for several mirrors at once."""

    def __init__(self, mirrors: dict[str, object]):
        self.mirrors = mirrors  # name -> function (bucket, key) -> Path
        self.put_at: dict[tuple[str, str], float] = {}
        self.seen: dict[str, dict[tuple[str, str], float]] = {name: {} for name in mirrors}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, bucket: str, key: str, at: float) -> None:
        with self.lock:
            self.put_at[(bucket, key)] = at

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                waiting = list(self.put_at.items())
            for name, path_of in self.mirrors.items():
                seen = self.seen[name]
                for item, _ in waiting:
                    if item in seen:
                        continue
                    try:
                        if os.stat(path_of(*item)).st_size == PAYLOAD:  # type: ignore[operator]
                            seen[item] = time.time()
                    except OSError:
                        pass
            time.sleep(0.02)

    def wait(self, items: list[tuple[str, str]], timeout: float) -> dict[str, list[float]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(all(i in s for i in items) for s in self.seen.values()):
            time.sleep(0.2)
        result = {}
        for name, seen in self.seen.items():
            result[name] = [seen[i] - self.put_at[i] for i in items if i in seen]
            if len(result[name]) < len(items):
                print(f"  {name}: only {len(result[name])} of {len(items)} mirrored within {timeout:.0f} s", flush=True)
        return result


def rows_for(phase: str, lat: dict[str, list[float]], size: str, note: str) -> list[Row]:
    rows = []
    for label, pick in (("p50", lambda v: percentile(v, 0.5)), ("p99", lambda v: percentile(v, 0.99)),
                        ("max", max)):
        ours, theirs = lat["ours"], lat["mc"]
        rows.append(Row(f"3 latency {phase} {label}", pick(ours) if ours else float("nan"),
                        pick(theirs) if theirs else None, "s", "lower", size, "mc mirror --watch",
                        note + (f"; mc mirrored {len(theirs)} of {len(ours)}" if len(theirs) < len(ours) else "")))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 objects in the burst, 10 s of steady puts")
    parser.add_argument("--cpu-budget", type=float, default=None,
                        help="minio.cpu_budget_percent for the agent (default: the config's; 0: unpaced)")
    args = parser.parse_args()
    burst, steady_seconds = (200, 10) if args.quick else (1000, 60)
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-latency-"))
    (work / "minio").mkdir()
    minio = PrivateMinio(env, work / "minio")
    minio.start()
    client = minio.client()
    for bucket in ("bench-burst", "bench-steady"):
        client.make_bucket(bucket)
    mc_proc = agent = None
    try:
        with leased_redis_db(env) as db:
            agent = start_agent(work, redis_url(env, db), minio,
                                None if args.cpu_budget is None else {"cpu_budget_percent": args.cpu_budget})
            log = (work / "agent.log").open("ab")
            (work / "mc").mkdir()
            mc_proc = subprocess.Popen([env["MC"], "mirror", "--watch", "--quiet", "bench/", str(work / "mc")],
                                       env=mc_env(minio), stdout=log, stderr=log, start_new_session=True)
            time.sleep(5)  # start-up: the first reconcile, listeners attached
            store = MirrorStore(work / "backups" / "minio_mirror")
            watcher = Watcher({"ours": store.path_of, "mc": lambda b, k: work / "mc" / b / k})
            payload = os.urandom(PAYLOAD)

            def put(bucket: str, key: str) -> tuple[str, str]:
                client.put_object(bucket, key, io.BytesIO(payload), len(payload))
                watcher.put(bucket, key, time.time())
                return bucket, key

            steady: list[tuple[str, str]] = []
            started = time.monotonic()
            for i in range(steady_seconds * 20):
                steady.append(put("bench-steady", f"steady/{i:05d}.bin"))
                time.sleep(max(0.0, started + (i + 1) / 20 - time.monotonic()))
            steady_lat = watcher.wait(steady, 300)
            if not args.quick:
                time.sleep(WINDOW_SECONDS)

            with ThreadPoolExecutor(8) as pool:
                items = list(pool.map(lambda i: put("bench-burst", f"burst/{i:05d}.bin"), range(burst)))
            burst_lat = watcher.wait(items, 600)
            watcher.stop.set()
    finally:
        for proc in (agent, mc_proc):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        minio.kill()
        shutil.rmtree(work, ignore_errors=True)
    note = "poll of the mirror's files every 20 ms, both mirrors running on the same stream" + (
        "" if args.cpu_budget is None else f"; minio.cpu_budget_percent {args.cpu_budget:g}")
    rows = rows_for("burst", burst_lat, f"{burst:,} puts of 4 KiB, 8 at a time", note)
    rows += rows_for("steady", steady_lat, f"20 puts/s of 4 KiB for {steady_seconds} s", note)
    publish("agent_latency", rows)
    print_table(rows, "figure 3: event -> mirrored latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
