"""DistributedDataParallel and FSDP2: two ranks launched by torchrun (gloo, CPU) train a spec compiled by archspec."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

WORKER = ROOT / "tests" / "ddp_worker.py"


def torchrun() -> list[str]:
    """The torchrun next to this Python (the venv's), else the same launcher as a module."""
    script = Path(sys.executable).parent / "torchrun"
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


def launch(folder: Path, *args: str) -> dict | list[dict]:
    """Two ranks of tests/ddp_worker.py; its JSON findings."""
    out = folder / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # one thread per rank on 2 cores
    cmd = [*torchrun(), "--standalone", "--nproc_per_node", "2", str(WORKER), "--steps", "3", *args, "--out", str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=folder)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(out.read_text())


RUNS = ("ddp:none", "ddp:aot_eager", "fsdp:none")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path]:
    """ResNet-18 under DDP (eager, then compiled) and FSDP2, one after another in one launch (each launch of two
    ranks takes seconds to start); their findings by run, and the folder of rank 0's trained weights."""
    folder = tmp_path_factory.mktemp("ddp")
    found = launch(folder, *(arg for run in RUNS for arg in ("--setup", run)), "--weights-out", str(folder))
    assert isinstance(found, list) and len(found) == len(RUNS)
    return {f"{r['wrap']}:{r['compile']}": r for r in found}, folder


def check_ranks_in_sync(result: dict) -> None:
    assert result["world_size"] == 2 and result["backend"] == "gloo" and result["steps"] == 3
    assert result["initial_param_spread"] == 0.0  # ranks seeded apart; DDP broadcast rank 0's weights
    assert result["grad_spread"] == 0.0           # every step: all-reduced gradients identical on both ranks
    assert result["final_param_spread"] == 0.0    # identical weights afterwards (bit for bit) ...
    assert result["param_change"] > 1e-3          # ... that did change
    rank0, rank1 = result["losses"]
    assert rank0 != rank1                         # each rank saw its own data


def test_two_ranks_hold_identical_weights(runs: tuple[dict[str, dict], Path]) -> None:
    check_ranks_in_sync(runs[0]["ddp:none"])


def test_two_compiled_ranks_hold_identical_weights(runs: tuple[dict[str, dict], Path]) -> None:
    check_ranks_in_sync(runs[0]["ddp:aot_eager"])


def test_fsdp_trains_as_ddp_does(runs: tuple[dict[str, dict], Path]) -> None:
    """FSDP2 (`fully_shard` per top-level layer) from the same start on the same batches ends at the
    weights DDP ends at: sharded gradients reduce-scattered to the same averages as DDP's all-reduce."""
    import torch

    found, folder = runs
    ddp, fsdp = found["ddp:none"], found["fsdp:none"]
    assert fsdp["initial_param_spread"] == 0.0 and fsdp["param_change"] > 1e-3
    for rank in (0, 1):  # each rank's own batches give the same losses under both
        assert fsdp["losses"][rank] == pytest.approx(ddp["losses"][rank], rel=1e-5)
    a, b = torch.load(folder / "ddp_none.pt"), torch.load(folder / "fsdp_none.pt")
    assert list(a) == list(b) and len(a) == 62  # ResNet-18: every parameter, by its module path
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
