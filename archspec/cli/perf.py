"""`bench` and `train` command-line handlers (wired into archspec/cli.py).

Each `add_*_arguments(parser)` adds the command's positional SPEC and its own options; `--set`,
`--variant` and `--phi` come from cli.py's common options (read here with getattr, so a parser
without them works too). Handlers return the exit code; errors propagate to cli.main, which prints
them on one line (SpecError: exit 2; ValueError/RuntimeError/OSError: exit 1).
"""
from __future__ import annotations

import argparse

from .args import add_allow_large, check_fits, load_spec, positive_float, positive_int
from ..errors import UsageError
from ..units import plural


def _threads(c: argparse.ArgumentParser) -> None:
    c.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads for torch (default: torch's; 1 is often faster for small models on a busy machine)")


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def add_bench_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    c.add_argument("--batch", type=positive_int, metavar="B", help="batch size (default: 8 on cpu, 256 on cuda)")
    c.add_argument("--train", action="store_true", help="time a training step (forward, loss, backward, SGD step)")
    c.add_argument("--compile", action="store_true", help="torch.compile (inductor); compiled during the warm-up")
    c.add_argument("--amp", choices=("bf16", "fp16"), help="torch.autocast with this dtype")
    c.add_argument("--channels-last", action="store_true", help="model and input in torch.channels_last")
    c.add_argument("--reference", action="store_true",
                   help="also time the spec's torchvision/timm model, same process and settings, and print the ratio")
    c.add_argument("--deploy", action="store_true",
                   help="time ours in its deploy form (folded, channels_last, --amp as pure weights, frozen) and the "
                        "reference at its best (compiled; on cuda, bf16 autocast and channels_last)")
    c.add_argument("--autotune", action="store_true", help="with --deploy: inductor's max-autotune for ours")
    c.add_argument("--warmup", type=positive_int, default=3, metavar="N", help="untimed iterations per model (default 3)")
    c.add_argument("--iters", type=positive_int, default=10, metavar="N", help="timed iterations per model (default 10)")
    _threads(c)
    add_allow_large(c)


def cmd_bench(args: argparse.Namespace) -> int:
    spec = load_spec(args)
    from ..tools.bench import BenchSettings, bench, resolve_device

    if args.autotune and not args.deploy:
        raise UsageError("--autotune applies to the deploy form; give --deploy too")
    _set_threads(args)
    device = resolve_device(args.device)
    settings = BenchSettings(device=str(device), batch=args.batch or (256 if device.type == "cuda" else 8),
                             train=args.train, compile=args.compile,
                             amp=args.amp or ("bf16" if args.deploy and device.type == "cuda" else None),
                             channels_last=args.channels_last, warmup=args.warmup, iters=args.iters,
                             deploy=args.deploy, autotune=args.autotune)
    check_fits(args, spec, device, settings.batch, training=args.train, optimizer_states=1)  # SGD with momentum
    report = bench(spec, settings=settings, reference=args.reference)
    print(report.text())
    return 0


def add_train_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--epochs", type=positive_int, default=10, metavar="N", help="epochs (default 10)")
    c.add_argument("--batch", type=positive_int, default=64, metavar="B", help="batch size (default 64)")
    c.add_argument("--lr", type=positive_float, default=2e-3, metavar="LR",
                   help="AdamW peak learning rate, cosine-decayed per step (default 0.002)")
    c.add_argument("--device", default="cpu", help="cpu, cuda ... (default: cpu)")
    c.add_argument("--seed", type=int, default=0, help="seed of the held-out split, the init and the batch order")
    c.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="held-out share of the data set, stratified by class (default 0.2)")
    _threads(c)
    add_allow_large(c)


def cmd_train(args: argparse.Namespace) -> int:
    """Train on scikit-learn's digits (1x8x8, 10 classes); fit a bundled spec with --set, e.g.
    --set input.channels=1 --set input.size=8 --set layers.fc.out=10."""
    spec = load_spec(args)
    if not 0 < args.test_fraction < 1:
        raise UsageError("--test-fraction must be between 0 and 1")
    from ..tools.bench import resolve_device
    from ..tools.train import DIGITS_SAMPLES, EVAL_BATCH, check_fits_digits, train

    _set_threads(args)
    device = resolve_device(args.device)
    check_fits_digits(spec)
    check_fits(args, spec, device, min(args.batch, DIGITS_SAMPLES), training=True, optimizer_states=2)  # AdamW
    check_fits(args, spec, device, EVAL_BATCH)  # the held-out accuracy, in eval batches
    result = train(spec, epochs=args.epochs, batch=args.batch, lr=args.lr, device=device, seed=args.seed,
                   test_fraction=args.test_fraction)
    print(f"{spec.name}: held-out accuracy {result.test_accuracy:.2%} on {result.test_size} digits "
          f"after {plural(len(result.history), 'epoch')}")
    return 0
