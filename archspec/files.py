"""Writing outputs safely: every file archspec writes goes through `write_atomic`.

The data goes to a temporary file beside the target (`.NAME.XXXXXXXX.tmp`), created with the mode a plain
`open()` gives (0o666 less the umask), is flushed to disk, then published in one step: without `force` by
a hard link, which fails if the target exists (of two writers exactly one wins; nothing is replaced), with
`force` by a rename over it. A target that exists but is not a regular file (a device, a FIFO, a folder,
a socket) is refused, and so is one of the command's inputs. The temporary file is removed whatever
happens: an error, Ctrl-C, SIGTERM or SIGHUP (the process then ends as the signal meant), interpreter
exit. Every refusal or failed write (a full disk, ...) is an `OutputError` of one line.
"""
from __future__ import annotations

import atexit
import errno
import os
import signal
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable, Iterator

CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
# os.link fails so where the file system has no hard links (FAT, some network and FUSE mounts).
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}
NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_LIVE: set[Path] = set()  # temporary files being written, removed at exit if still there


class OutputError(OSError):
    """An output that cannot be written, said in one line (the command line exits 2)."""


class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def check_output(path: str | Path, *, force: bool = False, protect: Iterable[str | Path] = ()) -> None:
    """Refuse, before any work, an output `write_atomic` would refuse: one of `protect` (the inputs),
    something other than a regular file, or an existing file without `force`."""
    path = Path(path)
    for source in map(Path, protect):
        if _same_file(path, source):
            what = "spec" if source.suffix in (".yaml", ".yml") else "file"
            raise OutputError(f"refusing to overwrite the input {what} {source}; choose another output (-o)")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        raise OutputError(f"{path} is {_kind(mode)}, not a regular file; refusing to write over it")
    if not force:
        raise OutputError(f"{path} exists; pass --force to replace it")


def write_atomic(path: str | Path, write: Callable[[Path], None], *, force: bool = False,
                 protect: Iterable[str | Path] = ()) -> None:
    """Write `path` by `write(tmp)` (which writes the file `tmp`, by its path) and publish it atomically
    (see the module docstring). `force`: replace an existing regular file."""
    path = Path(path)
    check_output(path, force=force, protect=protect)
    with cleanup_on_signals():
        tmp: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _create_temp(path)
            write(tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            _publish(tmp, path, force)
        except OutputError:
            raise
        except Exception as exc:
            cause = _in_chain(exc, OSError)
            if cause is None:
                raise
            reason = NO_SPACE.get(cause.errno or 0)
            raise OutputError(f"{reason} writing {path}" if reason else
                              f"cannot write {path}: {cause.strerror or cause}") from exc
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
                _LIVE.discard(tmp)


def write_bytes(path: str | Path, data: bytes, *, force: bool = False, protect: Iterable[str | Path] = ()) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(data), force=force, protect=protect)


def save_torch(path: str | Path, obj: Any, *, force: bool = False, protect: Iterable[str | Path] = ()) -> None:
    """`torch.save(obj)` through `write_atomic`. Into a Python file: where torch writes a path itself,
    its C++ writer reports a full disk only as "enforce fail at inline_container.cc"; through a Python
    file the OSError (ENOSPC) is the exception's context, which `write_atomic` reports."""
    import torch

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    write_atomic(path, save, force=force, protect=protect)


@contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise, so that `finally` clauses
    remove temporary files; then the signal is delivered again, to its previous (default) action.
    Signals with a handler of their own, or ignored, are left alone; SIGINT raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_signalled) for sig in CLEANUP_SIGNALS
                if signal.getsignal(sig) is signal.SIG_DFL}
    signum = None
    try:
        yield
    except BaseException as exc:
        signalled = _in_chain(exc, _Signalled)  # torch's C++ code wraps what its Python callbacks raise
        if signalled is None or not previous:
            raise
        signum = signalled.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signum is not None:
        signal.raise_signal(signum)
        raise SystemExit(128 + signum)  # only if the signal did not end the process


def _raise_signalled(signum: int, frame: FrameType | None) -> None:
    raise _Signalled(signum)


def _create_temp(path: Path) -> Path:
    while True:
        tmp = path.with_name(f".{path.name[:200]}.{os.urandom(4).hex()}.tmp")  # [:200]: within NAME_MAX (255)
        try:  # O_EXCL: never a file someone else made; mode 0o666 less the umask, as open() gives
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
        except FileExistsError:
            continue
        _LIVE.add(tmp)
        return tmp


def _publish(tmp: Path, path: Path, force: bool) -> None:
    if force:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # atomic: FileExistsError if `path` exists, whoever made it and when
        except FileExistsError:
            raise OutputError(f"{path} exists; pass --force to replace it") from None
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            _claim_and_replace(tmp, path)
    try:  # the new directory entry on disk too (best effort: not every file system can sync a folder)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:
        pass


def _claim_and_replace(tmp: Path, path: Path) -> None:
    """No-clobber without hard links: claim the name with O_EXCL (atomic), then rename over the claim."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise OutputError(f"{path} exists; pass --force to replace it") from None
    try:
        os.replace(tmp, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _same_file(path: Path, other: Path) -> bool:
    try:
        return path.resolve() == other.resolve() or os.path.samefile(path, other)  # samefile: hard links too
    except OSError:
        return False


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _in_chain(exc: BaseException, kind: type[BaseException]) -> Any:
    """`exc` or the first exception of `kind` among its causes and contexts."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


@atexit.register
def _remove_live() -> None:
    for tmp in list(_LIVE):
        tmp.unlink(missing_ok=True)
