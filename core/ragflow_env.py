"""Reading RAGFlow's own `docker/.env`, where its credentials and ports live.

The file is RAGFlow's, edited by hand: it is read tolerantly. A line that is not valid UTF-8 is left out
and reported (which line, which variable); only a command that needs that variable's value fails, and
says so. Values of secret-named variables are handed to core.redact, so no message shows them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from core import redact


@dataclass(frozen=True)
class UnreadableLine:
    path: Path
    line: int  # 0: the whole file
    name: str | None  # the variable it sets, when the bytes before "=" can be read
    problem: str  # e.g. "byte 0xe9 at column 21 is not valid UTF-8"

    def message(self) -> str:
        if self.line == 0:  # the whole file
            return f"{self.path}: {self.problem}; check its owner and mode"
        what = f" ({self.name})" if self.name else ""
        return (f"line {self.line} of {self.path}{what} cannot be read: {self.problem}; save the file as UTF-8 "
                f"(e.g. `iconv -f latin1 -t utf-8 {self.path.name} > {self.path.name}.utf8` and move it in place), "
                f"or put the last backed-up copy back with `ragflow-backup restore -C config`")


@dataclass
class EnvFile:
    values: dict[str, str] = field(default_factory=dict)
    unreadable: list[UnreadableLine] = field(default_factory=list)

    def unreadable_variable(self, name: str) -> UnreadableLine | None:
        return next((item for item in self.unreadable if item.name == name or item.line == 0), None)


def load_env_file(path: Path) -> EnvFile:
    """KEY=VALUE lines in the .env style, decoded line by line; {} when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return EnvFile()
    try:
        data = path.read_bytes()
    except OSError as exc:
        return EnvFile(unreadable=[UnreadableLine(path, 0, None, f"the file cannot be read ({exc.strerror})")])
    readable: list[str] = []
    unreadable: list[UnreadableLine] = []
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            readable.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            readable.append("\n")  # keeps the line numbers of python-dotenv's own warnings
            unreadable.append(UnreadableLine(path, number, _variable_name(raw),
                                             f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid UTF-8"))
    values = {key: value for key, value in dotenv_values(stream=io.StringIO("".join(readable))).items()
              if value is not None}
    redact.remember(value for key, value in values.items() if redact.is_secret_name(key))
    return EnvFile(values, unreadable)


def _variable_name(raw: bytes) -> str | None:
    name = raw.split(b"=", 1)[0].strip()
    if name.startswith(b"export "):
        name = name[len(b"export "):].strip()
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.replace("_", "a").isalnum() and b"=" in raw else None


def load_ragflow_env(ragflow_dir: Path) -> EnvFile:
    return load_env_file(Path(ragflow_dir) / ".env")


def read_ragflow_env(ragflow_dir: Path) -> dict[str, str]:
    """Return the key/values of `<ragflow_dir>/.env` (lines that cannot be decoded left out), or {}."""
    return load_ragflow_env(ragflow_dir).values


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines in the .env style (offsite.env_file: the backend's credentials)."""
    return load_env_file(path).values
