"""What the command-line modules (cli, perf_cli, deploy_cli) share: argument types, spec loading and the
memory guard every command that allocates runs first."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..reports.guard import MemoryEstimate, check_memory
from ..language.inherit import source_files
from ..language.spec import Spec, load


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got '{text}'")
    return int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def add_weight_options(parser: argparse.ArgumentParser) -> None:
    """--map and --verify, beside a command's --weights (docs/weights.md)."""
    parser.add_argument("--map", metavar="FILE", help="a YAML/JSON mapping {our.prefix: their.prefix} that says "
                                                      "where --weights' tensors go (for what no other method decides)")
    parser.add_argument("--verify", action="store_true",
                        help="run the spec's reference model with the model's weights (batch-norm statistics "
                             "randomised) and fail unless the outputs agree within 1e-4 (relative)")


def inputs(args: argparse.Namespace) -> list[Path]:
    """What a writing command reads, which no output may replace, even with --force: the spec and every file it
    extends, --weights and --map."""
    files = source_files(args.spec)
    return files + [Path(p) for p in (getattr(args, "weights", None), getattr(args, "map", None)) if p]


def load_spec(args: argparse.Namespace, path: str | None = None, variant: str | None = None) -> Spec:
    """The command's spec (`args.spec`, or `path`) with its --set, --variant (or `variant`) and --phi."""
    return load(path or args.spec, getattr(args, "set", None) or None,
                variant=variant or getattr(args, "variant", None), phi=getattr(args, "phi", None))


def add_jobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--jobs", type=positive_int, default=None, metavar="N",
                        help="read the specs in up to N processes (default: one per CPU, for 16 specs or more; "
                             "1: in this one)")


def add_allow_large(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-large", action="store_true",
                        help="run even if the estimated memory exceeds half of what is available")


def check_fits(args: argparse.Namespace, spec: Spec, device: Any, batch: int = 1, *, training: bool = False,
               optimizer_states: int = 0) -> MemoryEstimate:
    """The memory guard, before a command allocates: `spec` at `batch` images on `device` ('cpu', 'cuda:1', a
    torch.device; on CUDA, against its free memory), unless --allow-large; a located SpecError (exit 2) if it
    would not fit."""
    kind, free = str(device).split(":")[0], None
    if kind == "cuda":
        import torch

        free = torch.cuda.mem_get_info(torch.device(device))[0]
    return check_memory(spec, device=kind, batch=batch, device_memory=free, training=training,
                        optimizer_states=optimizer_states, allow_large=getattr(args, "allow_large", False))
