"""What every benchmark script shares: the machine, timing with CPU, medians, du counting, result rows,
the private MinIO it loads, and the table. Rows go to .bench/parts/<script>.json and are merged into
.bench/results.json (written atomically), so each script can run alone or under bench/run.py."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
PARTS = BENCH_DIR / "parts"
RESULTS = BENCH_DIR / "results.json"
# The order of the table: one script per figure.
SCRIPTS = ("mirror_initial", "reconcile_nochange", "agent_latency", "mysql_dump", "storage_30_days",
           "verify_restore", "agent_footprint", "postgres_dump", "binlog_lag", "binlog_replay",
           "search_interval")
KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3


def machine() -> dict[str, Any]:
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "memory_gib": round(memory / GiB, 1), "cpu": model,
            "load_1min": round(os.getloadavg()[0], 2), "python": platform.python_version()}


@dataclass
class Row:
    figure: str
    ours: float
    anchor: float | None
    unit: str
    better: Literal["lower", "higher"]
    size: str  # the data the figure was measured on
    anchor_name: str = ""
    note: str = ""  # runs, median, what was measured
    ratio: float | None = None  # ours / anchor
    machine: dict[str, Any] = field(default_factory=machine)
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def __post_init__(self) -> None:
        if self.ratio is None and self.anchor not in (None, 0):
            self.ratio = self.ours / self.anchor  # type: ignore[operator]
        if self.better not in ("lower", "higher"):
            raise ValueError(f"better must be 'lower' or 'higher', not {self.better!r}")

    @property
    def wins(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio <= 1 if self.better == "lower" else self.ratio >= 1


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def publish(script: str, rows: list[Row], bench_dir: Path | None = None) -> Path:
    """Keep one script's rows and rebuild results.json from every script's latest rows."""
    folder = bench_dir or BENCH_DIR
    _write_json(folder / "parts" / f"{script}.json", [asdict(row) for row in rows])
    merged: list[dict[str, Any]] = []
    names = sorted((folder / "parts").glob("*.json"),
                   key=lambda p: (SCRIPTS.index(p.stem) if p.stem in SCRIPTS else len(SCRIPTS), p.stem))
    for part in names:
        merged += json.loads(part.read_text())
    _write_json(folder / "results.json", merged)
    return folder / "results.json"


def load_rows(path: Path = RESULTS) -> list[Row]:
    return [Row(**row) for row in json.loads(path.read_text())]


def print_table(rows: Iterable[Row], title: str = "ragflow-backup benchmarks") -> None:
    from rich.console import Console
    from rich.table import Table

    rows = list(rows)
    info = rows[0].machine if rows else machine()
    table = Table(title=f"{title} - {rows[0].date if rows else ''} - {info['cores']} cores, "
                        f"{info['memory_gib']} GiB, {info['cpu']}")
    for name, justify in (("figure", "left"), ("ours", "right"), ("anchor", "right"), ("ratio", "right"),
                          ("unit", "left"), ("better", "left"), ("anchor is", "left"), ("data", "left"),
                          ("note", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        mark = {True: "[green]", False: "[red]", None: ""}[row.wins]
        table.add_row(row.figure, fmt(row.ours), fmt(row.anchor),
                      f"{mark}{row.ratio:.2f}" if row.ratio is not None else "-", row.unit, row.better,
                      row.anchor_name, row.size, row.note)
    Console(width=200).print(table)


def to_markdown(rows: Iterable[Row]) -> str:
    """The table as Markdown, for docs/benchmarks.md."""
    lines = ["| figure | ours | anchor | ratio | unit | better | anchor is | data | note |",
             "|---|--:|--:|--:|---|---|---|---|---|"]
    for row in rows:
        cells = [row.figure, fmt(row.ours), fmt(row.anchor), f"{row.ratio:.2f}" if row.ratio is not None else "-",
                 row.unit, row.better, row.anchor_name, row.size, row.note]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0  # user + system, of this process and of the children it waited for


def _cpu_now() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextmanager
def timed() -> Iterator[Timing]:
    """Wall and CPU seconds of the block. Children count once waited for (subprocess.run does)."""
    result = Timing()
    wall, cpu = time.monotonic(), _cpu_now()
    try:
        yield result
    finally:
        result.wall, result.cpu = time.monotonic() - wall, _cpu_now() - cpu


def run_quiet(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = done.stdout.decode("utf-8", "replace")[-2000:]
        raise RuntimeError(f"{argv[0]} exited with {done.returncode}: {tail}")


def du_bytes(*roots: Path) -> int:
    """Bytes of the files under `roots`, a hard-linked file counted once (sum of st_size per (dev, inode))."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                stat = os.lstat(os.path.join(folder, name))
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_size
    return total


# ---------------------------------------------------------------- processes of one session


def session_pids(sid: int) -> list[int]:
    """The processes of a session (an agent started with start_new_session: it and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def tree_usage(sid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and RSS MiB summed over a session's live processes."""
    cpu, rss, tick = 0.0, 0.0, os.sysconf("SC_CLK_TCK")
    for pid in session_pids(sid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
        except OSError:
            continue
    return cpu, rss


# ---------------------------------------------------------------- a private MinIO with bench data


def put_objects(client: Any, items: list[tuple[str, str, int]], threads: int = 8) -> int:
    """Put (bucket, key, size) objects of random bytes; returns the bytes written."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    for bucket in sorted({bucket for bucket, _, _ in items}):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)

    def put(item: tuple[str, str, int]) -> int:
        bucket, key, size = item
        client.put_object(bucket, key, io.BytesIO(os.urandom(size)), size, part_size=64 * MiB)
        return size

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(put, items))


def small_objects(count: int, buckets: int, prefix: str = "small", seed: int = 6) -> list[tuple[str, str, int]]:
    """`count` objects of 1-64 KiB spread over `buckets` buckets, with RAGFlow-like folder depth."""
    import random

    rng = random.Random(seed)
    return [(f"{prefix}-{i % buckets:02d}", f"doc-{i // 100:04d}/{i:07d}.bin", rng.randint(1 * KiB, 64 * KiB))
            for i in range(count)]


def mc_env(minio: Any, alias: str = "bench") -> dict[str, str]:
    """mc's settings in its environment (MC_HOST_<alias>), so the secret is never in an argv."""
    from urllib.parse import quote

    return {**os.environ, f"MC_HOST_{alias}": f"http://{quote(minio.access_key, safe='')}:"
            f"{quote(minio.secret_key, safe='')}@{minio.endpoint}", "MC_CONFIG_DIR": str(minio.data.parent / "mc")}


def settings_for(minio: Any, storage_root: Path, **extra: Any) -> Any:
    """Unpaced (minio.cpu_budget_percent and catch_up_cpu_percent 0): figures 1 and 2 measure how fast the
    data path is; figure 7 runs the agent with the default pacing."""
    from core.config import Settings

    unpaced = minio.settings().model_copy(update={"cpu_budget_percent": 0, "catch_up_cpu_percent": 0})
    return Settings(storage_root=storage_root, minio=unpaced, **extra)


def timeit(fn: Callable[[], Any]) -> tuple[Timing, Any]:
    with timed() as timing:
        value = fn()
    return timing, value


def start_agent(work: Path, broker_url: str, minio: Any, minio_options: dict | None = None) -> subprocess.Popen:
    """`ragflow-backup run` mirroring a private MinIO into work/backups, with no schedules, in a session
    of its own (its workers are counted with it, and stopped together); its log is work/agent.log.
    minio_options: more of the config's minio section (e.g. cpu_budget_percent)."""
    import sys

    import yaml

    config = work / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage_root": str(work / "backups"),
        "broker": {"url": broker_url, "namespace": "bench"},
        "minio": {"endpoint": minio.endpoint, "access_key": minio.access_key, "secret_key": minio.secret_key,
                  **(minio_options or {})},
        "mysql": {"enabled": False}, "search": {"enabled": False}, "config_files": {"enabled": False},
        "schedule": {"backup": "", "verify": "", "reconcile": "", "versions_prune": ""},
        "metrics": {"port": 0},
    }))
    log = (work / "agent.log").open("ab")
    cli = str(Path(sys.executable).parent / "ragflow-backup")
    return subprocess.Popen([cli, "--config", str(config), "run", "--threads", "8"], stdout=log, stderr=log,
                            start_new_session=True)
