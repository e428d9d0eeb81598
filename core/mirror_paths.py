"""Where the mirror keeps an object key on disk: at its own path, UTF-8 as it is, so a person can browse
the mirror (`报告.pdf` is `报告.pdf`) and `mc mirror` a bucket folder back to the same keys.

Only what cannot be a path is escaped, and every escape is visible:
- NUL (and a lone surrogate) becomes `%XX` per byte; a key's own `%` becomes `%25` only where it would
  read as an escape (before two upper-case hex digits or before `~`), so "100% done.pdf" stays as it is;
- a `.` or `..` segment becomes `%2E` / `%2E.`; an empty segment ("a//b", "dir/") becomes `%~empty`;
- a segment longer than MAX_SEGMENT (249) bytes keeps a readable prefix and ends `%~<hash of the segment>`;
- a key whose path would exceed MAX_PATH bytes is stored flat as `%~long/<hash of the key>`.
Every marker starts with `%~`, which no escaped key can contain otherwise, so the map is injective
(`decode_key` inverts it for every key that was not hashed). Two more markers are added by the store
(core/mirror_store.py): a file whose name a folder needs ("a" while "a/b" exists) is `a%~file`, and a
superseded copy under .versions ends `%~v<time>-<token>`. A bucket's folder also escapes a leading `.`,
so no bucket can take the mirror's own names (.index.sqlite, .tmp, .versions, .convert, .orphans).
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
from functools import lru_cache
from pathlib import PurePosixPath

INDEX_FILE = ".index.sqlite"  # the mirror's index, at its root
MARK = "%~"
EMPTY = "%~empty"
FILE_MARK = "%~file"
LONG_DIR = "%~long"
VERSION_MARK = "%~v"
HASH_CHARS = 40
MAX_NAME = 255  # bytes per name on the usual file systems
MAX_SEGMENT, KEEP_PREFIX = MAX_NAME - len(FILE_MARK), 170  # room for FILE_MARK; a hash form is 212 bytes at most
MAX_PATH = 3000  # bytes of the relative path; leaves PATH_MAX (4096) room for the storage root
_HEX = frozenset("0123456789ABCDEF")
_MAY_ESCAPE = re.compile("[\x00%\ud800-\udfff]")  # a text without these is its own escaped form


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _reads_as_escape(text: str, at: int) -> bool:
    """Would the `%` at `at` be taken for an escape or a marker by `decode_segment`?"""
    after = text[at + 1:at + 3]
    return after[:1] == "~" or (len(after) == 2 and set(after) <= _HEX)


def _escaped(text: str) -> str:
    if _MAY_ESCAPE.search(text) is None:  # most keys: nothing to escape (a commit encodes each key several times)
        return text
    out = []
    for at, char in enumerate(text):
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            out.append("".join(f"%{byte:02X}" for byte in _raw(char)))
        elif char == "%" and _reads_as_escape(text, at):
            out.append("%25")
        else:
            out.append(char)
    return "".join(out)


def segment(text: str, top: bool = False) -> str:
    """One key segment as a file or folder name; `top`: a bucket's folder (a leading `.` is escaped)."""
    if text == "":
        return EMPTY
    if text in (".", "..") or (top and text.startswith(".")):
        out = "%2E" + _escaped(text[1:])
    else:
        out = _escaped(text)
    return out if len(_raw(out)) <= MAX_SEGMENT else _shortened(out, _raw(text))


def _shortened(name: str, identity: bytes) -> str:
    """A readable prefix of `name`, MARK and a hash of `identity` (what tells this name from all others)."""
    prefix = _raw(name)[:KEEP_PREFIX].decode("utf-8", "ignore")  # never half a character
    if "%" in prefix[-2:]:
        prefix = prefix[:prefix.rindex("%")]  # nor half an escape
    return prefix + MARK + hashlib.sha256(identity).hexdigest()[:HASH_CHARS]


@lru_cache(maxsize=4096)  # a commit asks for the same key's path several times (core/mirror_store.py)
def encode_key(key: str) -> PurePosixPath:
    """The key's path relative to its bucket's folder (before the store's `%~file`, see the docstring)."""
    names = [segment(part) for part in key.split("/")]
    if sum(len(_raw(name)) + 1 for name in names) > MAX_PATH:
        return PurePosixPath(LONG_DIR, hashlib.sha256(_raw(key)).hexdigest())
    return PurePosixPath(*names)


def is_flat(relative: PurePosixPath) -> bool:
    """Is this a too-long key's flat hashed path (it has no folders that other keys could need)?"""
    return relative.parts[0] == LONG_DIR


def decode_segment(name: str) -> str | None:
    """The key segment `segment` made `name` from; None for a hashed (shortened) one."""
    if name == EMPTY:
        return ""
    out, at = bytearray(), 0
    while at < len(name):
        if name[at] == "%" and name[at + 1:at + 2] == "~":
            return None
        if name[at] == "%" and _reads_as_escape(name, at):
            out.append(int(name[at + 1:at + 3], 16))
            at += 3
        else:
            out += _raw(name[at])
            at += 1
    return out.decode("utf-8", "surrogatepass")


def decode_key(relative: str | PurePosixPath) -> str | None:
    """The key stored at `relative` (a path under its bucket's folder, `%~file` allowed); None if hashed."""
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] == LONG_DIR:
        return None
    names = [*parts[:-1], parts[-1].removesuffix(FILE_MARK)]
    decoded = [decode_segment(name) for name in names]
    return None if None in decoded else "/".join(decoded)  # type: ignore[arg-type]


@lru_cache(maxsize=1024)
def bucket_dir(bucket: str) -> PurePosixPath:
    return PurePosixPath(segment(bucket, top=True))


def object_path(bucket: str, key: str, file_mark: bool = False) -> PurePosixPath:
    """Relative to the mirror's root; `file_mark`: the key's name is needed as a folder by other keys."""
    relative = bucket_dir(bucket) / encode_key(key)
    return relative.with_name(relative.name + FILE_MARK) if file_mark else relative


def version_path(bucket: str, key: str, stamp: str, token: str) -> PurePosixPath:
    """A superseded copy: never a folder's name, so it needs no `%~file` (see the module docstring). A name
    with no room left for the suffix is shortened (versions are found through the index, not by name)."""
    relative = encode_key(key)
    name, suffix = relative.name, f"{VERSION_MARK}{stamp}-{token}"
    if len(_raw(name + suffix)) > MAX_NAME:
        name = _shortened(name, b"version\0" + _raw(name))
    return PurePosixPath(".versions") / bucket_dir(bucket) / relative.with_name(name + suffix)


def has_subkeys(conn: sqlite3.Connection, bucket: str, key: str) -> bool:
    """Does a current key of the bucket need `key`'s path as a folder ("a/b" for "a")? Keys stored flat
    (too long) need no folder. Keys sort as UTF-8 bytes, so "a/..." lies between "a/" and "a0"."""
    if is_flat(encode_key(key)):
        return False
    last = f"{key}/"
    while True:
        rows = conn.execute("SELECT key FROM objects WHERE bucket=? AND key >= ? AND key < ? ORDER BY key LIMIT 100",
                            (bucket, last, f"{key}0")).fetchall()
        if any(not is_flat(encode_key(row[0])) for row in rows):
            return True
        if len(rows) < 100:
            return False
        last = rows[-1][0] + "\x00"
