"""`bench` and `train` command-line handlers (wired into archspec/cli.py).

Each `add_*_arguments(parser)` adds the command's positional SPEC and its own options; `--set`,
`--variant` and `--phi` come from cli.py's common options (read here with getattr, so a parser
without them works too). Handlers return the exit code; errors propagate to cli.main, which prints
them on one line (SpecError: exit 2; ValueError/RuntimeError/OSError: exit 1).
"""
from __future__ import annotations

import argparse
from typing import Any

from .spec import Spec, load


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got '{text}'")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def _load(args: argparse.Namespace) -> Spec:
    return load(args.spec, getattr(args, "set", None) or None, variant=getattr(args, "variant", None),
                phi=getattr(args, "phi", None))


def _threads(c: argparse.ArgumentParser) -> None:
    c.add_argument("--threads", type=_positive, metavar="N",
                   help="CPU threads for torch (default: torch's; 1 is often faster for small models on a busy machine)")


def _set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def add_bench_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    c.add_argument("--batch", type=_positive, metavar="B", help="batch size (default: 8 on cpu, 256 on cuda)")
    c.add_argument("--train", action="store_true", help="time a training step (forward, loss, backward, SGD step)")
    c.add_argument("--compile", action="store_true", help="torch.compile (inductor); compiled during the warm-up")
    c.add_argument("--amp", choices=("bf16", "fp16"), help="torch.autocast with this dtype")
    c.add_argument("--channels-last", action="store_true", help="model and input in torch.channels_last")
    c.add_argument("--reference", action="store_true",
                   help="also time the spec's torchvision/timm model, same process and settings, and print the ratio")
    c.add_argument("--warmup", type=_positive, default=3, metavar="N", help="untimed iterations per model (default 3)")
    c.add_argument("--iters", type=_positive, default=10, metavar="N", help="timed iterations per model (default 10)")
    _threads(c)


def cmd_bench(args: argparse.Namespace) -> int:
    spec = _load(args)
    from .bench import BenchSettings, bench, resolve_device

    _set_threads(args)
    device = resolve_device(args.device)
    settings = BenchSettings(device=str(device), batch=args.batch or (256 if device.type == "cuda" else 8),
                             train=args.train, compile=args.compile, amp=args.amp,
                             channels_last=args.channels_last, warmup=args.warmup, iters=args.iters)
    report = bench(spec, settings=settings, reference=args.reference)
    print(report.text())
    return 0


def add_train_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--epochs", type=_positive, default=10, metavar="N", help="epochs (default 10)")
    c.add_argument("--batch", type=_positive, default=64, metavar="B", help="batch size (default 64)")
    c.add_argument("--lr", type=_positive_float, default=2e-3, metavar="LR",
                   help="AdamW peak learning rate, cosine-decayed per step (default 0.002)")
    c.add_argument("--device", default="cpu", help="cpu, cuda ... (default: cpu)")
    c.add_argument("--seed", type=int, default=0, help="seed of the held-out split, the init and the batch order")
    c.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="held-out share of the data set, stratified by class (default 0.2)")
    _threads(c)


def cmd_train(args: argparse.Namespace) -> int:
    """Train on scikit-learn's digits (1x8x8, 10 classes); fit a bundled spec with --set, e.g.
    --set input.channels=1 --set input.size=8 --set layers.fc.out=10."""
    spec = _load(args)
    if not 0 < args.test_fraction < 1:
        raise ValueError("--test-fraction must be between 0 and 1")
    from .bench import resolve_device
    from .train import train

    _set_threads(args)
    device = resolve_device(args.device)
    result = train(spec, epochs=args.epochs, batch=args.batch, lr=args.lr, device=device, seed=args.seed,
                   test_fraction=args.test_fraction)
    print(f"{spec.name}: held-out accuracy {result.test_accuracy:.2%} on {result.test_size} digits "
          f"after {len(result.history)} epochs")
    return 0


def bench_parser() -> argparse.ArgumentParser:
    """A stand-alone parser (tests, `python -m archspec.perf_cli`): the command's options plus --set/--variant/--phi."""
    p = argparse.ArgumentParser(prog="archspec")
    sub = p.add_subparsers(dest="command", required=True)
    for name, add, func in (("bench", add_bench_arguments, cmd_bench), ("train", add_train_arguments, cmd_train)):
        c = sub.add_parser(name)
        c.set_defaults(func=func)
        c.add_argument("--set", action="append", metavar="PATH=VALUE")
        c.add_argument("--variant", metavar="NAME")
        c.add_argument("--phi", type=float, metavar="PHI")
        add(c)
    return p


def main(argv: Any = None) -> int:
    args = bench_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
