"""A tool run inside a container through the Docker API (`docker exec`), as the docker-mode clients of
actors/mysql/ and actors/postgres/ run theirs: its output read in blocks with the end of its stderr kept, a
file fed to its stdin, and its exit code once the daemon has noted it. core/child_output.py is the same for a
child on this host."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from docker.utils.socket import frames_iter

from core.child_output import CHUNK, STDERR_KEEP

STDOUT, STDERR = 1, 2  # the stream numbers of the exec's multiplexed frames


class Ended:
    """A `finished` callback below that keeps what it is given: the exit code and the end of stderr."""

    code: int | None = None
    stderr = b""

    def __call__(self, code: int | None, stderr: bytes) -> None:
        self.code, self.stderr = code, stderr


def exit_code(api: Any, exec_id: str) -> int | None:
    """The exec's exit code; None when it still runs after ~10 s (the output can end a moment before the
    daemon notes the exit; a dropped stream also ends it)."""
    for _ in range(100):
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            return state.get("ExitCode")
        time.sleep(0.1)
    return None


def keep_tail(errors: bytearray, data: bytes) -> None:
    """Add `data` to the stderr kept, of which only the last STDERR_KEEP bytes stay."""
    errors += data
    del errors[:-STDERR_KEEP]


def stdout_blocks(api: Any, exec_id: str, finished: Callable[[int | None, bytes], None]) -> Iterator[bytes]:
    """Start the exec (created with stdout and stderr) and yield its stdout in blocks of about CHUNK bytes (its
    frames are small; a dump is compressed and counted in big pieces). However it ends (done, or abandoned by
    the reader: closing the stream ends the tool with a broken pipe), `finished` gets its exit code and the
    last STDERR_KEEP bytes of its stderr."""
    frames = api.exec_start(exec_id, stream=True, demux=True)
    buffer, errors = bytearray(), bytearray()
    try:
        for out, err in frames:
            if err:
                keep_tail(errors, err)
            if out:
                buffer += out
                if len(buffer) >= CHUNK:
                    yield bytes(buffer)
                    buffer.clear()
        if buffer:
            yield bytes(buffer)
    finally:
        frames.close()
        finished(exit_code(api, exec_id), bytes(errors))


def stdout_frames(sock: Any, errors: bytearray) -> Iterator[bytes]:
    """The stdout frames of an exec started with `socket=True`, as they come; its stderr goes to `errors`
    (the tail kept)."""
    for stream, data in frames_iter(sock, tty=False):
        if stream == STDERR:
            keep_tail(errors, data)
        elif stream == STDOUT:
            yield data


def raw_socket(sock: Any) -> socket.socket:
    """The socket under docker's hijacked exec stream, to write the tool's stdin and shut it down."""
    return getattr(sock, "_sock", sock)


def close(sock: Any, raw: socket.socket) -> None:
    """End the exec's connection (`raw`: raw_socket(sock), taken when it was opened), even while another thread
    is blocked reading it (shutdown, not just close). Closing twice does no harm."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        raw.close()
    with contextlib.suppress(OSError):
        sock.close()


def fed_stdout(api: Any, exec_id: str, path: Path, thread_name: str,
               finished: Callable[[int | None, bytes], None]) -> Iterator[bytes]:
    """Start the exec (created with stdin, stdout and stderr), stream the file at `path` to its stdin from a
    thread (the file is on this host, not in the container) and yield its stdout frames. However it ends,
    `finished` gets its exit code and the last STDERR_KEEP bytes of its stderr."""
    sock = api.exec_start(exec_id, socket=True)
    raw = raw_socket(sock)
    errors = bytearray()

    def feed() -> None:
        try:
            with open(path, "rb") as source:
                while block := source.read(CHUNK):
                    raw.sendall(block)
        except OSError:
            pass  # the tool stopped reading (a broken archive) or was abandoned: its exit code says so
        finally:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_WR)  # the tool's stdin ends

    feeder = threading.Thread(target=feed, name=thread_name, daemon=True)
    feeder.start()
    try:
        yield from stdout_frames(sock, errors)
    finally:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)  # ends the feeder's send; closed once it is done with the socket
        feeder.join(10)
        close(sock, raw)
        finished(exit_code(api, exec_id), bytes(errors))
