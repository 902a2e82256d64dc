"""Writing outputs safely: through a temporary file in the same folder, then one atomic rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence


def write_atomic(path: Path, write: Callable[[Path], None], inputs: Sequence[Path] = ()) -> None:
    """Write `path` via `write(tmp)` and rename; never over one of `inputs` (the spec being read)."""
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise OSError(f"refusing to overwrite the input spec {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
