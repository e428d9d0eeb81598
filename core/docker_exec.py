"""A tool run inside a container through the Docker API (`docker exec`), as the docker-mode clients of
actors/mysql/ and actors/postgres/ run theirs (ContainerTools): its output read in blocks with the end of its
stderr kept, a file fed to its stdin, and its exit code once the daemon has noted it. core/child_output.py is
the same for a child on this host."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from docker.utils.socket import frames_iter

from core.child_output import CHUNK, STDERR_KEEP
from core.clients import find_compose_container
from core.component import PermanentError
from core.tool_session import ToolSession

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


def fed_stdout(api: Any, exec_id: str, path: Path, thread_name: str, finished: Callable[[int | None, bytes], None],
               cut_by: Callable[[Callable[[], None]], None] | None = None) -> Iterator[bytes]:
    """Start the exec (created with stdin, stdout and stderr), stream the file at `path` to its stdin from a
    thread (the file is on this host, not in the container) and yield its stdout frames. However it ends,
    `finished` gets its exit code and the last STDERR_KEEP bytes of its stderr. `cut_by`, if given, is handed a
    function that ends the exec's connection from another thread (a watchdog's), which ends the reading here."""
    sock = api.exec_start(exec_id, socket=True)
    raw = raw_socket(sock)
    errors = bytearray()

    def cut() -> None:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)

    if cut_by is not None:
        cut_by(cut)

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
        cut()  # ends the feeder's send; the socket is closed once it is done with it
        feeder.join(10)
        close(sock, raw)
        finished(exit_code(api, exec_id), bytes(errors))


@contextmanager
def compose_container(docker_host: str | None, service: str, project: str | None, engine: str,
                      section: str) -> Iterator[Any]:
    """The running container of RAGFlow's compose `service` (of `engine`, set in the config's `section`), its
    Docker client closed afterwards; an error saying which settings to fix when there is not exactly one."""
    try:
        container = find_compose_container(docker_host, service, project)
    except LookupError as exc:
        raise PermanentError(f"no {engine} container to run the client tools in: {exc}. Start RAGFlow's {section} "
                             f"service, or set {section}.compose_service / {section}.compose_project (and "
                             f"docker.host) to match its compose labels") from None
    try:
        yield container
    finally:
        container.client.close()


class ContainerTools(ToolSession):
    """docker mode: the tools inside the server's container, through the Docker API. A subclass creates the
    exec of a tool with the connection's user and password (`create_exec`), which never reach an argv."""

    mode = "docker"

    def __init__(self, container: Any):
        self.container = container
        self.api = container.client.api
        self.where = f"container {container.name}"

    def create_exec(self, tool: str, args: list[str], connect: bool) -> str:
        """The id of an exec of `tool` with stdout and stderr; with `connect`, set to reach the server."""
        raise NotImplementedError

    def exec_exit_code(self, exec_id: str) -> int | None:
        return exit_code(self.api, exec_id)

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        exec_id = self.create_exec(tool, args, connect)
        out, err = self.api.exec_start(exec_id, demux=True)
        code = self.exec_exit_code(exec_id)
        return (code if code is not None else -1), out or b"", err or b""

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        self.exit_code, self.stderr = None, b""
        yield from stdout_blocks(self.api, self.create_exec(tool, args, True), self.finished)
