"""One function over many spec files, in forked worker processes where that is quicker: the commands that read
dozens of specs (`validate specs/*.yaml`, `list` without its cache). Each spec takes milliseconds of pure Python,
so on several cores the files share them out; on one core, on a platform that does not fork, for a few files, or
in a process that has loaded torch (whose threads a fork must not copy), the work runs here."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

FILES_PER_WORKER = 8  # below this a worker costs more (its fork, its first schema builds) than it saves


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fan_out(work: Callable[[Item], Result], items: Sequence[Item], jobs: int | None = None) -> Iterator[Result]:
    """`work(item)` for each item, in order, as each is done. `jobs`: at most this many processes (default: the
    usable CPUs; 1 runs everything here). `work` and the items are passed to the workers by pickling, the
    results come back the same way; an exception raised by `work` is raised here."""
    workers = min(jobs or usable_cpus(), len(items) // FILES_PER_WORKER)
    if workers < 2 or sys.platform != "linux" or "torch" in sys.modules:
        yield from map(work, items)
        return
    import multiprocessing  # here: 15 ms of imports that one process does not need

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(work, items)  # one item a task: an exception loses no other item's result
