"""What the command-line modules (cli, perf_cli, deploy_cli) share: argument types and spec loading."""
from __future__ import annotations

import argparse

from .spec import Spec, load


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


def load_spec(args: argparse.Namespace, path: str | None = None, variant: str | None = None) -> Spec:
    """The command's spec (`args.spec`, or `path`) with its --set, --variant (or `variant`) and --phi."""
    return load(path or args.spec, getattr(args, "set", None) or None,
                variant=variant or getattr(args, "variant", None), phi=getattr(args, "phi", None))
