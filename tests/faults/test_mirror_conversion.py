"""The mirror's in-place layout conversion (core/mirror_convert.py) SIGKILLed over and over at every
stage: each run resumes where the last one died, and nothing is ever lost on the way."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.mirror_store import MirrorStore
from tests.core.legacy_mirror import build
from tests.core.test_mirror_convert import CURRENT, OLD, check_converted

# Opens the mirror (which converts it) and SIGKILLs itself right after its N-th rename of this run,
# before the index records it; small batches so that some batches commit between the deaths.
KILLED_AFTER_RENAMES = """
import os, signal, sys
from pathlib import Path
from core import mirror_convert
from core.mirror_store import MirrorStore
mirror_convert.BATCH = 3
left = int(sys.argv[2])
real_replace = os.replace
def replace_then_die(src, dst):
    global left
    real_replace(src, dst)
    left -= 1
    if left == 0:
        os.kill(os.getpid(), signal.SIGKILL)
mirror_convert.os.replace = replace_then_die
MirrorStore(Path(sys.argv[1])).close()
"""


def blobs_under(root: Path) -> set[bytes]:
    return {path.read_bytes() for path in root.rglob("*") if path.is_file() and ".index" not in path.name}


@pytest.mark.fault("mirror layout conversion SIGKILLed half-way (again and again)",
                   "the next open resumes it: every object at its new path with its bytes, every version "
                   "kept, nothing lost, the index consistent")
@pytest.mark.parametrize("renames_per_life", [1, 4, 7])
def test_a_conversion_killed_at_any_rename_resumes_and_loses_nothing(tmp_path, renames_per_life):
    root = tmp_path / "m"
    build(root, "bkt", CURRENT, OLD)
    (root / "bkt" / "docs%" / "stray.txt").write_bytes(b"stray")
    everything = {*CURRENT.values(), *(data for datas in OLD.values() for data in datas), b"stray"}
    deaths = 0
    while True:
        run = subprocess.run([sys.executable, "-c", KILLED_AFTER_RENAMES, str(root), str(renames_per_life)],
                             cwd=Path(__file__).parents[2], capture_output=True)
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, run.stderr.decode()
        deaths += 1
        assert blobs_under(root) >= everything, "a kill lost bytes"
        assert deaths < 200, "the conversion makes no progress between kills"
    renames = 2 * (len(CURRENT) + sum(map(len, OLD.values()))) + 1  # staged, placed; the stray file
    assert deaths == renames // renames_per_life, "each life resumes where the last died and redoes no rename"
    store = MirrorStore(root)
    check_converted(store)
    assert (root / ".orphans" / "bkt" / "docs%" / "stray.txt").read_bytes() == b"stray"


@pytest.mark.fault("two processes open a mirror of the first layout at once (agent and workers after an upgrade)",
                   "they share the conversion under the index's write lock; the result is the same as one")
def test_two_processes_converting_one_mirror_at_once_leave_it_converted_once(tmp_path):
    root = tmp_path / "m"
    build(root, "bkt", CURRENT, OLD)
    both = [subprocess.Popen([sys.executable, "-c", KILLED_AFTER_RENAMES, str(root), "0"],  # never killed
                             cwd=Path(__file__).parents[2]) for _ in range(2)]
    assert [process.wait(timeout=120) for process in both] == [0, 0]
    check_converted(MirrorStore(root))
    assert not (root / ".orphans").exists(), "no file was taken for an orphan"
