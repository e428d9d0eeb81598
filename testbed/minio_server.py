"""A MinIO server of its own (the test bed's binary, a free port, a folder): for tests and benchmarks
that restart it or need a store with nothing else in it."""
from __future__ import annotations

from pathlib import Path


class PrivateMinio:
    """A MinIO server of one test's own (the test bed's binary, a free port, a tmp data folder), for
    tests that restart it or need a store with no other buckets in it."""

    def __init__(self, env: dict[str, str], data: Path):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env, self.data, self.process = env, data, None
        self.endpoint = f"127.0.0.1:{self.port}"
        self.access_key, self.secret_key = env["MINIO_ACCESS_KEY"], env["MINIO_SECRET_KEY"]

    def start(self) -> None:
        import os
        import subprocess
        import time
        import urllib.request

        environment = {**os.environ, "MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key,
                       "MINIO_BROWSER": "off"}
        log = (self.data.parent / f"minio-{self.port}.log").open("ab")
        self.process = subprocess.Popen([self.env["MINIO_BIN"], "server", str(self.data), "--address", self.endpoint,
                                         "--console-address", "127.0.0.1:0"], env=environment, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/minio/health/ready", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"private MinIO on {self.endpoint} did not become ready; see {log.name}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def settings(self):
        from core.config import MinioSettings

        return MinioSettings(endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key)

    def client(self):
        from core.clients import minio_client

        return minio_client(self.settings())
