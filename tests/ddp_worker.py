"""One rank of a DDP (or FSDP) smoke run, launched by torchrun (not a test module; tests/test_ddp.py runs it).

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py --out result.json           # gloo, CPU
    torchrun --standalone --nproc_per_node 1 tests/ddp_worker.py --backend nccl --device cuda \
        --compile inductor --out result.json                                                  # GPU
    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py --wrap fsdp --weights-out w.pt  # FSDP2
    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py --setup ddp:none --setup fsdp:none \
        --weights-out folder/ --out results.json                     # several runs in one launch

Each rank builds the spec with archspec (under DDP from a different seed: DDP must broadcast rank 0's
weights), wraps it in DistributedDataParallel (optionally under torch.compile), and trains a few SGD
steps on its own random batches. After every backward pass the ranks' gradients are gathered and
compared (DDP all-reduces them, so they must agree), and at the end their parameters. Rank 0 writes
the findings as JSON to --out, and the trained parameters to --weights-out.

With `--wrap fsdp`, PyTorch's FSDP2 (`fully_shard`) shards every top-level layer that holds parameters,
then the network. FSDP does not broadcast at wrap time, so every rank starts from rank 0's seed; each
rank holds a shard of every parameter and gradient, so the gradient check does not apply: the test
compares the trained parameters with a DDP run's instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import archspec  # noqa: E402
from archspec.tools.train import loss_of  # noqa: E402


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).float() for t in tensors])


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: FSDP's parameters are DTensor shards (gathered from every rank here)."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def full_parameters(model: torch.nn.Module) -> torch.Tensor:
    return flat([full(p) for p in model.parameters()])


def spread(vector: torch.Tensor, world: int) -> float:
    """The largest difference between any rank's copy of `vector` and rank 0's."""
    gathered = [torch.empty_like(vector) for _ in range(world)]
    dist.all_gather(gathered, vector)
    return max((g - gathered[0]).abs().max().item() for g in gathered)


def train(spec: archspec.Spec, wrap: str, backend: str, args: argparse.Namespace, device: torch.device,
          weights_out: Path | None) -> dict:
    """One run: build, wrap (`ddp` or `fsdp`), optionally compile (`backend`), train; rank 0's findings."""
    rank, world = dist.get_rank(), dist.get_world_size()
    fsdp = wrap == "fsdp"
    torch.manual_seed(1000 + (0 if fsdp else rank))  # under DDP each rank initialises differently ...
    model = archspec.compile(spec, device).train()
    if fsdp:
        for layer in model.children():
            if any(True for _ in layer.parameters()):
                fully_shard(layer)
        wrapped = fully_shard(model)
    else:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    initial = full_parameters(model).clone()  # ... and DDP's constructor gives all rank 0's weights
    start_spread = spread(initial, world)
    net = wrapped if backend == "none" else torch.compile(wrapped, backend=backend)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    data = torch.Generator().manual_seed(2000 + rank)  # different batches on each rank
    losses, grad_spreads = [], []
    started = time.perf_counter()
    for _ in range(args.steps):
        x = torch.randn(args.batch, *spec.input.shape, generator=data).to(device)
        y = torch.randint(0, spec.output_shape[0], (args.batch,), generator=data).to(device)
        loss, _ = loss_of(net(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if not fsdp:  # FSDP's gradients are shards: each rank holds other parts
            grad_spreads.append(spread(flat([q.grad for q in model.parameters()]), world))
        optimiser.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - started

    final = full_parameters(model)
    all_losses = [None] * world
    dist.all_gather_object(all_losses, losses)
    named = {name: full(p).detach().cpu() for name, p in model.named_parameters()}
    if rank == 0 and weights_out:
        torch.save(named, weights_out)
    return {
        "world_size": world, "backend": args.backend, "device": str(device), "compile": backend, "wrap": wrap,
        "spec": spec.name, "params": int(initial.numel()), "steps": args.steps,
        "initial_param_spread": start_spread,      # 0: DDP broadcast rank 0's weights
        "grad_spread": max(grad_spreads) if grad_spreads else None,  # 0: DDP's all-reduced gradients agree
        "final_param_spread": spread(final, world),  # 0: identical weights after training
        "param_change": (final - initial).abs().max().item(),  # > 0: the weights did train
        "losses": all_losses,                      # one list per rank: differ, as the data do
        "seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default=str(ROOT / "specs" / "resnet18.yaml"))
    p.add_argument("--set", action="append", default=None, metavar="PATH=VALUE",
                   help="default for resnet18: 32x32 input, 10 classes")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--backend", default="gloo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", default="none", help="a torch.compile backend (inductor, aot_eager, ...) or none")
    p.add_argument("--wrap", choices=("ddp", "fsdp"), default="ddp")
    p.add_argument("--setup", action="append", metavar="WRAP:COMPILE",  # not --run: torchrun takes it for its --run-path
                   help="several runs in one launch (e.g. ddp:none fsdp:none); replaces --wrap and --compile, "
                        "and --out then holds a list, one entry per run")
    p.add_argument("--out", type=Path)
    p.add_argument("--weights-out", type=Path, help="rank 0 saves the trained parameters here (torch.save); with "
                                                   "--setup, a folder for WRAP_COMPILE.pt")
    args = p.parse_args()
    overrides = args.set if args.set is not None else ["input.size=32", "layers.fc.out=10"]
    runs = [tuple(run.split(":")) for run in args.setup] if args.setup else [(args.wrap, args.compile)]

    dist.init_process_group(args.backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if args.device == "cuda" else args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    spec = archspec.load(args.spec, overrides)
    results = []
    for wrap, backend in runs:
        weights = args.weights_out / f"{wrap}_{backend}.pt" if args.setup and args.weights_out else args.weights_out
        results.append(train(spec, wrap, backend, args, device, weights))
        dist.barrier()
    if dist.get_rank() == 0:
        found = results if args.setup else results[0]
        print(json.dumps(found))
        if args.out:
            args.out.write_text(json.dumps(found, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
