"""Where a database's client tools run (actors/mysql/session.py, actors/postgres/session.py): on this host, or
inside the server's container (core/docker_exec.py ContainerTools). The same face either way."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.child_output import stdout_blocks


class ToolSession:
    """Runs client tools somewhere; `connect=True` adds the connection settings and secret."""

    mode = ""
    where = ""
    exit_code: int | None = None
    stderr = b""

    def run(self, tool: str, args: list[str], connect: bool = True) -> tuple[int, bytes, bytes]:
        raise NotImplementedError

    def stream(self, tool: str, args: list[str]) -> Iterator[bytes]:
        """Yield stdout in pieces of about core/child_output.py's CHUNK; afterwards `exit_code` and `stderr`
        are set."""
        raise NotImplementedError

    def finished(self, code: int | None, stderr: bytes) -> None:
        """Keep how a streamed tool ended: its exit code and the end of its stderr."""
        self.exit_code, self.stderr = code, stderr

    def child_blocks(self, argv: list[str], env: dict[str, str], stderr_file: Path, stall: float, server: str,
                     setting: str) -> Iterator[bytes]:
        """stream() of a tool run on this host (core/child_output.py): given up after `stall` seconds without a
        byte, with a message naming the `server` and the `setting` that sets the stall."""
        self.exit_code, self.stderr = None, b""
        tool = Path(argv[0]).name

        def stalled() -> Exception:
            return TimeoutError(f"{server} at {self.where} sent nothing for {stall}s in the middle of the dump "
                                f"(is the server hung?); {tool} was stopped ({setting})")

        yield from stdout_blocks(argv, env, stderr_file, stall, stalled, self.finished)

    def version(self, tool: str) -> str | None:
        """The tool's --version line; None when it does not run here."""
        code, out, _ = self.run(tool, ["--version"], connect=False)
        return out.decode("utf-8", "replace").strip() if code == 0 else None

    def find(self, tools: tuple[str, ...]) -> tuple[str, str] | None:
        """The first of `tools` that runs here, and its --version line."""
        for tool in tools:
            line = self.version(tool)
            if line is not None:
                return tool, line
        return None
