"""Shared helpers: the bundled specs and the live reference models they reproduce."""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

# Idle OpenMP threads sleep instead of spinning. The suite computes in several processes at once (this one,
# the background workers below, the CLI and torchrun subprocesses), and a torch thread that spins while it
# waits takes the core another process computes on: three processes of two threads on 2 cores ran a
# ResNet-18 forward 7x slower than with passive waiting. OpenMP reads it when torch is loaded, which is after this line;
# the workers and the subprocesses (the CLI, torchrun) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402
from archspec.reports.catalogue import network_key  # noqa: E402

ALL_SPECS = sorted(SPECS.glob("*.yaml"))
# A background worker (a process spawned below) imports a test module only for its jobs: it skips the work that
# parametrises the tests (loading every spec, importing timm to find each reference's module).
IN_WORKER = multiprocessing.parent_process() is not None


def _network(path: Path) -> str:
    """The network a spec resolves to, whatever its file, name, variant and reference say (as `cli.py list`)."""
    return network_key(archspec.load(path, analyse=False))


def _aliases() -> dict[str, str]:
    """{spec: the first spec, by name, that resolves to the same network}."""
    first: dict[str, str] = {}
    aliases = {}
    for path in ALL_SPECS:
        name = first.setdefault(_network(path), path.stem)
        if name != path.stem:
            aliases[path.stem] = name
    return aliases


# A family's entry point that resolves to one of its members (inception.yaml is googlenet.yaml): the
# per-spec checks that take seconds (export, dynamo, references) run once per network, in NETWORKS.
ALIASES = {} if IN_WORKER else _aliases()
NETWORKS = [] if IN_WORKER else [p for p in ALL_SPECS if p.stem not in ALIASES]
REFERENCED = [p for p in NETWORKS if archspec.load(p, analyse=False).reference]


def _origin(path: Path) -> str:
    """The module that defines the spec's reference model (torchvision.models.resnet; for timm, the package), else
    the spec that roots its `extends` chain."""
    reference = archspec.load(path, analyse=False).reference
    if reference:
        package, name = reference.split(":")
        if package == "torchvision":
            import torchvision

            return torchvision.models.get_model_builder(name).__module__
        return package  # timm's model modules take 9 s to import; no two timm networks here share block types
    while parent := yaml.safe_load(path.read_text()).get("extends"):
        path = path.parent / parent
    return path.stem


def _families() -> dict[tuple[str, frozenset[str]], list[Path]]:
    """{(origin, the block types the network uses): its networks, smallest first}: the members of a family
    run the same code, at other depths and widths (RegNet's fifteen, ResNet-50 to -152)."""
    nodes = {path: [node.type for node in archspec.load(path).analyse().walk()] for path in NETWORKS}
    families: dict[tuple[str, frozenset[str]], list[Path]] = {}
    for path in sorted(NETWORKS, key=lambda p: (len(nodes[p]), p.stem)):
        families.setdefault((_origin(path), frozenset(nodes[path])), []).append(path)
    return families


# The checks that take seconds per network and test code rather than figures (every export format, dynamo,
# the CLI per spec) run on the smallest network of each family: a new member costs only its figures and
# parity (params, MACs, shapes, outputs against its reference), which run for every spec.
FAMILIES = _families()
REPRESENTATIVES = sorted((members[0] for members in FAMILIES.values()), key=lambda p: p.stem)

# Specs whose reference takes seconds to build and run at full size on 2 cores.
HEAVY = {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
         "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
         "convnext_base", "convnext_large", "densenet161", "efficientnet_v2", "efficientnet_v2_l", "regnet_x_8gf",
         "regnet_x_16gf", "regnet_x_32gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf"}


def spec_params(paths: list[Path]) -> list:
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in HEAVY else []) for p in paths]


# -- heavy per-spec checks, run in the background ---------------------------------------------------------
# Exporting every spec (test_export) and tracing every spec with dynamo (test_torch_compile) take minutes of
# CPU. A test module names its heavy test in BACKGROUND_TEST and the job for one spec in background_job(path)
# (a picklable callable without arguments). The jobs of the collected tests start in spawned worker processes
# (one per core but this process's) as soon as collection ends, biggest first, and those tests run last: the
# rest of the suite runs beside the jobs, and then each test takes its own result (`background_result`), or
# computes it here when no worker has started it yet, so that this process works on the queue too instead of
# waiting. Every process computes with one thread: one busy process per core, none waiting on another's
# threads (2 threads each in this process and two workers on 2 cores took 16.6 minutes of the suite's wall
# time, one thread in this process and one worker 12.1). Under pytest-xdist, or on one core, each test
# computes its result itself.

_pool: Any = None
_futures: dict[tuple[str, Path], Any] = {}


def _is_background(item: pytest.Item) -> bool:
    name = getattr(getattr(item, "module", None), "BACKGROUND_TEST", None)
    return name is not None and getattr(item, "originalname", None) == name


def _background_items(session: pytest.Session) -> list[tuple[Any, Path]]:
    return [(item.module, item.callspec.params["path"]) for item in session.items if _is_background(item)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_is_background)  # stable: the background tests last, each group in its own order


def pytest_collection_finish(session: pytest.Session) -> None:
    global _pool
    jobs = _background_items(session)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if session.config.option.collectonly or os.environ.get("PYTEST_XDIST_WORKER") or cores < 2 or len(jobs) < 2:
        return
    _one_thread()
    _pool = ProcessPoolExecutor(cores - 1, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)
    size = {p: sum(1 for _ in archspec.load(p).analyse().walk()) for p in {path for _, path in jobs}}
    for module, path in sorted(jobs, key=lambda job: -size[job[1]]):
        _futures[(module.__name__, path)] = _pool.submit(module.background_job(path))


def _one_thread() -> None:
    """One thread per process, one process per core (the jobs are mostly Python: tracing, converting)."""
    import torch

    torch.set_num_threads(1)


def background_result(module: str, path: Path) -> Any:
    """The result of `module`'s background job for `path` (computed here if no worker has started it)."""
    future = _futures.get((module, path))
    if future is not None and not future.cancel():
        return future.result()
    return sys.modules[module].background_job(path)()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
