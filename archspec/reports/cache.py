"""A per-user cache of results computed from spec files (the catalogue's rows), so that listing a folder of specs
does not validate and analyse every one of them each time.

A result is reused only while every file it was computed from (the spec and the files it extends) has the same
bytes, and archspec's own source is the same: any edit to either computes it again. The cache is one JSON file
under `$XDG_CACHE_HOME/archspec/` (default `~/.cache/archspec/`), written atomically; one that cannot be read or
written is ignored (the results are computed as if there were none).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from functools import cache
from pathlib import Path
from typing import Any, Iterable

from .. import __file__ as _package_init
from ..files import OutputError, write_bytes

PACKAGE = Path(_package_init).parent


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/archspec, or ~/.cache/archspec where it is unset or relative (the XDG rule)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "archspec"


@cache
def code_fingerprint() -> str:
    """A digest of archspec's source: results computed by other code are not reused."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


MAX_CACHE_BYTES = 64 * 2 ** 20  # the cache file, or a file a result was computed from; a larger one is a miss


def _read(path: str | Path) -> bytes | None:
    """A regular file's bytes, or None: missing, unreadable, not a regular file (a FIFO is opened non-blocking
    and not read, so it cannot hang the command; a device is not read) or over MAX_CACHE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CACHE_BYTES:
            return None
        data = os.read(fd, MAX_CACHE_BYTES + 1)
        return data if len(data) <= MAX_CACHE_BYTES else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _digest(path: str) -> str | None:
    data = _read(path)
    return hashlib.sha256(data).hexdigest() if data is not None else None


class FileCache:
    """{key: value} results, each valid while the files it was computed from keep their bytes."""

    def __init__(self, name: str) -> None:
        self.path = cache_dir() / f"{name}.json"
        self.records: dict[str, Any] = {}
        self.changed = False
        try:
            data = json.loads(_read(self.path) or b"null")
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and data.get("code") == code_fingerprint() and isinstance(data.get("records"), dict):
            self.records = data["records"]

    def get(self, key: str) -> Any:
        record = self.records.get(key)
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict) or not record["files"]:
            return None
        if any(_digest(path) != digest for path, digest in record["files"].items()):
            return None
        return record.get("value")

    def put(self, key: str, value: Any, files: Iterable[Path]) -> None:
        self.records[key] = {"files": {str(path): _digest(str(path)) for path in files}, "value": value}
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        data = json.dumps({"code": code_fingerprint(), "records": self.records}).encode()
        try:
            write_bytes(self.path, data, force=True)
        except (OutputError, OSError):
            pass  # a cache that cannot be written costs time, not results
