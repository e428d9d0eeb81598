"""A dump compressed into its file as it streams, on threads of their own: zlib and zstd let go of the GIL
while they compress, so compressing overlaps with reading the dump tool's output and counting its rows."""
from __future__ import annotations

import queue
import threading
import zlib
from typing import Any

import zstandard


class GzipWriter:
    """Gzip-compress into `out` on a thread of its own: zlib lets go of the GIL while it compresses, so
    compressing, counting rows and reading mysqldump's output overlap instead of taking turns. The
    writer's error, if any, is raised in the caller (on its next write or at the end)."""

    def __init__(self, out: Any, level: int):
        self.out, self.error = out, None
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip container
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._run, name="mysql-gzip", daemon=True)

    def __enter__(self) -> GzipWriter:
        self.thread.start()
        return self

    def _run(self) -> None:
        ended = False
        try:
            while (chunk := self.queue.get()) is not None:
                if packed := self.compressor.compress(chunk):
                    self.out.write(packed)
            ended = True
            self.out.write(self.compressor.flush())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
            while not ended and self.queue.get() is not None:  # let the producer finish without blocking
                pass

    def write(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def __exit__(self, *exc_info: Any) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


class ZstdWriter:
    """zstd into `out`, compressed on zstd's own threads (it lets go of the GIL), frames checksummed."""

    def __init__(self, out: Any, level: int):
        compressor = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True)
        self.stream = compressor.stream_writer(out, closefd=False)

    def __enter__(self) -> ZstdWriter:
        return self

    def write(self, chunk: bytes) -> None:
        self.stream.write(chunk)

    def __exit__(self, *exc_info: Any) -> None:
        if exc_info[0] is None:
            self.stream.flush(zstandard.FLUSH_FRAME)
