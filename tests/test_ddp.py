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


def launch(tmp_path: Path, *args: str) -> dict:
    """Two ranks of tests/ddp_worker.py; its JSON findings."""
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # one thread per rank on 2 cores
    cmd = [*torchrun(), "--standalone", "--nproc_per_node", "2", str(WORKER), "--steps", "3", *args, "--out", str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Eager ResNet-18 under DDP; its findings and rank 0's trained weights (one launch, two tests)."""
    folder = tmp_path_factory.mktemp("ddp")
    return launch(folder, "--wrap", "ddp", "--weights-out", str(folder / "ddp.pt")), folder / "ddp.pt"


def check_ranks_in_sync(result: dict) -> None:
    assert result["world_size"] == 2 and result["backend"] == "gloo" and result["steps"] == 3
    assert result["initial_param_spread"] == 0.0  # ranks seeded apart; DDP broadcast rank 0's weights
    assert result["grad_spread"] == 0.0           # every step: all-reduced gradients identical on both ranks
    assert result["final_param_spread"] == 0.0    # identical weights afterwards (bit for bit) ...
    assert result["param_change"] > 1e-3          # ... that did change
    rank0, rank1 = result["losses"]
    assert rank0 != rank1                         # each rank saw its own data


def test_two_ranks_hold_identical_weights(ddp: tuple[dict, Path]) -> None:
    result, _ = ddp
    assert (result["compile"], result["wrap"]) == ("none", "ddp")
    check_ranks_in_sync(result)


def test_two_compiled_ranks_hold_identical_weights(tmp_path: Path) -> None:
    result = launch(tmp_path, "--compile", "aot_eager")
    assert (result["compile"], result["wrap"]) == ("aot_eager", "ddp")
    check_ranks_in_sync(result)


def test_fsdp_trains_as_ddp_does(tmp_path: Path, ddp: tuple[dict, Path]) -> None:
    """FSDP2 (`fully_shard` per top-level layer) from the same start on the same batches ends at the
    weights DDP ends at: sharded gradients reduce-scattered to the same averages as DDP's all-reduce."""
    import torch

    ddp_result, ddp_weights = ddp
    fsdp = launch(tmp_path, "--wrap", "fsdp", "--weights-out", str(tmp_path / "fsdp.pt"))
    assert fsdp["wrap"] == "fsdp" and fsdp["initial_param_spread"] == 0.0 and fsdp["param_change"] > 1e-3
    for rank in (0, 1):  # each rank's own batches give the same losses under both
        assert fsdp["losses"][rank] == pytest.approx(ddp_result["losses"][rank], rel=1e-5)
    a, b = torch.load(ddp_weights), torch.load(tmp_path / "fsdp.pt")
    assert list(a) == list(b) and len(a) == 62  # ResNet-18: every parameter, by its module path
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
