"""Event -> mirrored latency of the agent, and its idle footprint.

A private MinIO and `ragflow-backup run` (agent + workers) on the test bed's Redis; puts objects and
reads, from the mirror's index, when each one was mirrored. Prints a table; writes .bench/agent.json.

    python bench/agent_latency.py [--quick]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import yaml

from agent.mirror_store import MirrorStore
from testbed import env as testbed_env
from testbed.leases import leased_redis_db, redis_url
from testbed.minio_server import PrivateMinio

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "ragflow-backup")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def wait_mirrored(store: MirrorStore, bucket: str, put_at: dict[str, float], timeout: float) -> list[float]:
    """Seconds from each put's completion to its mirroring, once all are in (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    latencies: dict[str, float] = {}
    while len(latencies) < len(put_at) and time.monotonic() < deadline:
        for key, at in put_at.items():
            if key not in latencies and (entry := store.entry(bucket, key)) is not None:
                latencies[key] = entry.mirrored_at.timestamp() - at
        time.sleep(0.2)
    if len(latencies) < len(put_at):
        raise RuntimeError(f"only {len(latencies)} of {len(put_at)} objects mirrored within {timeout}s")
    return list(latencies.values())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer objects and shorter phases")
    args = parser.parse_args()
    burst, steady_seconds, idle_seconds = (200, 10, 10) if args.quick else (1000, 60, 60)
    env = testbed_env.load()
    work = Path(tempfile.mkdtemp(prefix="rb-bench-agent-"))
    (work / "minio").mkdir()
    minio = PrivateMinio(env, work / "minio")
    minio.start()
    client = minio.client()
    client.make_bucket("bench-burst")
    client.make_bucket("bench-steady")
    with leased_redis_db(env) as db:
        config = work / "config.yml"
        config.write_text(yaml.safe_dump({
            "storage_root": str(work / "backups"), "broker": {"url": redis_url(env, db), "namespace": "bench"},
            "minio": {"endpoint": minio.endpoint, "access_key": minio.access_key, "secret_key": minio.secret_key},
            "mysql": {"enabled": False}, "search": {"enabled": False}, "config_files": {"enabled": False},
            "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": ""}, "metrics": {"port": 0},
        }))
        log = (work / "agent.log").open("ab")
        agent = subprocess.Popen([CLI, "--config", str(config), "run", "--threads", "8"], stdout=log, stderr=log,
                                 start_new_session=True)
        try:
            time.sleep(5)  # start-up: the first reconcile, listeners attached
            store = MirrorStore(work / "backups" / "minio_mirror")
            payload = os.urandom(4096)

            put_at: dict[str, float] = {}

            def put(name: str) -> None:
                client.put_object("bench-burst", name, io.BytesIO(payload), len(payload))
                put_at[name] = datetime.now(timezone.utc).timestamp()

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, (f"burst/{i:05d}.bin" for i in range(burst))))
            burst_latency = wait_mirrored(store, "bench-burst", put_at, 600)

            steady_at: dict[str, float] = {}
            started = time.monotonic()
            for i in range(steady_seconds * 20):
                client.put_object("bench-steady", f"steady/{i:05d}.bin", io.BytesIO(payload), len(payload))
                steady_at[f"steady/{i:05d}.bin"] = datetime.now(timezone.utc).timestamp()
                time.sleep(max(0.0, started + (i + 1) / 20 - time.monotonic()))
            steady_latency = wait_mirrored(store, "bench-steady", steady_at, 300)

            time.sleep(5)
            cpu_before, wall_before = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(idle_seconds)
            idle_cpu = (cpu_seconds(agent.pid) - cpu_before) / (time.monotonic() - wall_before)
            rss = rss_mib(agent.pid)
        finally:
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait(60)
            minio.kill()
    rows = [
        ("burst p50", percentile(burst_latency, 0.5), "s"), ("burst p99", percentile(burst_latency, 0.99), "s"),
        ("burst max", max(burst_latency), "s"),
        ("steady p50", percentile(steady_latency, 0.5), "s"), ("steady p99", percentile(steady_latency, 0.99), "s"),
        ("steady max", max(steady_latency), "s"),
        ("idle CPU", idle_cpu * 100, "% of one core"), ("idle RSS", rss, "MiB"),
    ]
    print(f"agent: event -> mirrored latency ({burst} objects in a burst, 20 puts/s for {steady_seconds} s of 4 KiB), "
          f"idle footprint over {idle_seconds} s; {os.cpu_count()} cores")
    for name, value, unit in rows:
        print(f"  {name:<12} {value:10.3f} {unit}")
    print(f"  mean burst {statistics.mean(burst_latency):.3f} s, mean steady {statistics.mean(steady_latency):.3f} s")
    (ROOT / ".bench").mkdir(exist_ok=True)
    (ROOT / ".bench" / "agent.json").write_text(json.dumps([{"figure": f"agent {n}", "ours": v, "unit": u}
                                                            for n, v, u in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
