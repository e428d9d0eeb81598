"""A child process's standard output read in blocks, given up when it stalls: how a dump tool running
beside a server (mysqldump, pg_dump) is read, since a server hung mid-dump leaves its tool blocked forever;
and what the end of its stderr says, made fit for a message."""
from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK = 1 << 20
STDERR_KEEP = 64 * 1024  # the end of the child's stderr is kept for the error message


def stdout_blocks(argv: list[str], env: dict[str, str], stderr_file: Path, stall: float,
                  stalled: Callable[[], Exception], finished: Callable[[int | None, bytes], None]) -> Iterator[bytes]:
    """Yield the child's stdout in blocks; raise `stalled()` after `stall` seconds without a byte. However it
    ends (done, stalled, or abandoned by the reader), the child is not left running and `finished` gets its exit
    code and the last STDERR_KEEP bytes of its stderr."""
    with open(stderr_file, "w+b") as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env)
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            while True:
                if not select.select([fd], [], [], stall)[0]:
                    raise stalled()
                block = os.read(fd, CHUNK)
                if not block:
                    break
                yield block
            proc.wait()
        finally:
            if proc.poll() is None:  # abandoned mid-dump: don't leave the tool running
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            errors.seek(max(0, errors.tell() - STDERR_KEEP))
            finished(proc.returncode, errors.read())


def clean_stderr(raw: bytes, password: str) -> str:
    """A tool's stderr for a message: scrubbed of the password, blank lines dropped, kept short."""
    text = raw.decode("utf-8", "replace")
    if password:
        text = text.replace(password, "***")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = " | ".join(lines[-10:])
    return text if len(text) <= 1000 else "..." + text[-1000:]
