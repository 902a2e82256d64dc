"""Shared helpers: the bundled specs and the live reference models they reproduce."""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402

ALL_SPECS = sorted(SPECS.glob("*.yaml"))
REFERENCED = [p for p in ALL_SPECS if archspec.load(p, analyse=False).reference]
# Specs whose reference takes seconds to build and run at full size on 2 cores.
HEAVY = {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
         "resnet152", "resnext101_32x8d", "wide_resnet50_2"}


def spec_params(paths: list[Path]) -> list:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in HEAVY else []) for p in paths]


# -- heavy per-spec checks, run in the background ---------------------------------------------------------
# Exporting every spec (test_export) and tracing every spec with dynamo (test_torch_compile) take minutes of
# CPU. A test module names its heavy test in BACKGROUND_TEST and the job for one spec in background_job(path)
# (a picklable callable without arguments);
# the jobs of the collected tests start in two spawned worker processes as soon as collection ends, biggest
# first, so that they run beside the rest of the suite instead of after it, and each test waits for its own
# result (`background_result`). Under pytest-xdist, or on one core, each test computes its result itself.

_pool: Any = None
_futures: dict[tuple[str, Path], Any] = {}


def _background_items(session: pytest.Session) -> list[tuple[Any, Path]]:
    return [(item.module, item.callspec.params["path"]) for item in session.items
            if item.originalname == getattr(item.module, "BACKGROUND_TEST", None)]


def pytest_collection_finish(session: pytest.Session) -> None:
    global _pool
    jobs = _background_items(session)
    if os.environ.get("PYTEST_XDIST_WORKER") or (os.cpu_count() or 1) < 2 or len(jobs) < 2:
        return
    _pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    size = {p: sum(1 for _ in archspec.load(p).analyse().walk()) for p in {path for _, path in jobs}}
    for module, path in sorted(jobs, key=lambda job: -size[job[1]]):
        _futures[(module.__name__, path)] = _pool.submit(module.background_job(path))


def background_result(module: str, path: Path) -> Any:
    """The result of `module`'s background job for `path` (computed here if it was not started)."""
    if (module, path) in _futures:
        return _futures[(module, path)].result()
    return sys.modules[module].background_job(path)()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
