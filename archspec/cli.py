"""The `archspec` command line: a thin shell over the Python API.

Spec problems print one located line and exit 2; other failures print one line and exit 1.
torch is imported only by the commands that build or run a model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .blocks.base import Node, fmt_shape
from .errors import SpecError
from .spec import Spec, load

EXIT_SPEC_ERROR = 2


def human(n: int | float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def write_atomic(path: Path, write: Callable[[Path], None], inputs: Sequence[Path] = ()) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise OSError(f"refusing to overwrite the input spec {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(args: argparse.Namespace, path: str, variant: str | None = None) -> Spec:
    return load(path, args.set or None, variant=variant or getattr(args, "variant", None), phi=getattr(args, "phi", None))


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.specs:
        try:
            spec = _load(args, path)
        except SpecError as exc:
            print(exc, file=sys.stderr)
            status = EXIT_SPEC_ERROR
            continue
        print(f"ok  {path}  {spec.name}: {spec.params:,} params, {human(spec.macs, 'MACs')}, "
              f"output {fmt_shape(spec.output_shape)}")
    return status


def cmd_build(args: argparse.Namespace) -> int:
    spec = _load(args, args.spec)
    import torch

    from .compiler import compile
    from .interop import load_weights

    device = torch.device(args.device)
    start = time.perf_counter()
    model = compile(spec, device)
    built = time.perf_counter() - start
    if args.weights:
        print(load_weights(model, args.weights))
    model.eval()
    x = torch.randn(1, *spec.input.shape, device=device)
    start = time.perf_counter()
    with torch.no_grad():
        y = model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    forward = time.perf_counter() - start
    measured = sum(p.numel() for p in model.parameters())
    print(f"{spec.name}: built on {device} in {built * 1000:.0f} ms")
    print(f"  parameters   {measured:,}" + ("" if measured == spec.params else f"  (analysis says {spec.params:,}!)"))
    print(f"  MACs         {spec.macs:,} ({human(spec.macs)})")
    print(f"  input        {fmt_shape((1, *spec.input.shape))}")
    print(f"  output       {fmt_shape(tuple(y.shape))}  (one forward pass: {forward * 1000:.0f} ms)")
    if args.output:
        out = Path(args.output)
        payload = {"format": "archspec-checkpoint/1", "spec": spec.source,
                   "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
        write_atomic(out, lambda tmp: torch.save(payload, tmp), inputs=[Path(args.spec)])
        print(f"  checkpoint   {out}")
    return 0


def summary_dict(spec: Spec) -> dict[str, Any]:
    root = spec.analyse()

    def row(node: Node) -> dict[str, Any]:
        return {"name": node.path, "type": node.type, "output_shape": list(node.out_shape),
                "params": node.params, "macs": node.macs}

    return {"name": spec.name, "params": root.params, "macs": root.macs,
            "aux_params": spec.aux_params, "aux_macs": spec.aux_macs,
            "input_shape": list(root.in_shape), "output_shape": list(root.out_shape),
            "layers": [row(c) for c in root.children if not c.aux],
            "aux_heads": [row(c) for c in root.children if c.aux]}


def cmd_summary(args: argparse.Namespace) -> int:
    spec = _load(args, args.spec)
    data = summary_dict(spec)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = data["layers"] + data["aux_heads"]
    width = max(len(r["name"]) for r in rows + [{"name": "layer"}]) + 2
    print(f"{spec.name}  input {fmt_shape(tuple(data['input_shape']))}")
    print(f"{'layer':<{width}}{'type':<14}{'output':>14}{'params':>14}{'MACs':>16}")
    for r in rows:
        kind = "aux_head" if r in data["aux_heads"] else r["type"]
        print(f"{r['name']:<{width}}{kind:<14}{fmt_shape(tuple(r['output_shape'])):>14}"
              f"{r['params']:>14,}{r['macs']:>16,}")
    print(f"parameters  {data['params']:,} ({human(data['params'])})")
    if data["aux_params"]:
        print(f"  of which  {data['aux_params']:,} in training-only auxiliary heads; "
              f"{data['params'] - data['aux_params']:,} at inference")
    print(f"MACs        {data['macs']:,} ({human(data['macs'])}), multiply-adds of the conv and linear layers")
    print(f"FLOPs       {human(2 * data['macs'])} (2 per MAC, as torch.utils.flop_counter counts)")
    if data["aux_macs"]:
        print(f"  training  + {data['aux_macs']:,} MACs in the auxiliary heads")
    print(f"output      {fmt_shape(tuple(data['output_shape']))}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    base = _load(args, args.spec)
    names = [args.variant] if args.variant else list(base.variants) or [None]
    members = [(name, _load(args, args.spec, name) if name else base) for name in names]
    if args.phi is not None:
        members = [(f"phi={args.phi:g}", base)]
    print(f"{'variant':<12}{'width':>8}{'depth':>8}{'resolution':>12}{'params':>16}{'MACs':>18}")
    for name, spec in members:
        size = "x".join(str(d) for d in spec.input.shape[1:])
        print(f"{name or spec.name:<12}{spec.scaling.width:>8.3g}{spec.scaling.depth:>8.3g}{size:>12}"
              f"{spec.params:>16,}{spec.macs:>18,}")
    if args.explain:
        for name, spec in members:
            print(f"\n{name or spec.name}: width x{spec.scaling.width:.4g} (multiples of {spec.scaling.divisor}, "
                  f"at most {1 - spec.scaling.round_limit:.0%} down), depth x{spec.scaling.depth:.4g} (rounded up)")
            print(f"  {'where':<24}{'field':<10}{'base':>8}{'x factor':>12}{'rounded':>9}")
            for f in spec.scaled_fields:
                print(f"  {f.path:<24}{f.field:<10}{f.base:>8}{f.raw:>12.2f}{f.scaled:>9}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .schema import editor_schema

    print(json.dumps(editor_schema(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archspec", description="Declarative architecture specs for CNNs.")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(func=func)
        if name != "schema":
            c.add_argument("--set", action="append", metavar="PATH=VALUE",
                           help="override a value, e.g. --set layers.layer3.repeat=36 (repeatable)")
            c.add_argument("--variant", metavar="NAME", help="a row of the spec's variants table, e.g. b3")
            c.add_argument("--phi", type=float, metavar="PHI", help="a compound-scaling member (EfficientNet's phi)")
        return c

    c = command("validate", cmd_validate, "check specs: fields, types and every shape (no torch)")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c = command("build", cmd_build, "compile a spec, run one dummy forward pass, optionally save a checkpoint")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, meta ... (default: cpu)")
    c.add_argument("--weights", metavar="FILE", help="a torchvision/timm state_dict or archspec checkpoint")
    c.add_argument("-o", "--output", metavar="FILE", help="write a checkpoint (resolved spec + state_dict)")
    c = command("summary", cmd_summary, "parameters, MACs and shapes from the spec alone (no torch)")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = command("scale", cmd_scale, "a family's variants: width, depth, resolution, params, MACs (no torch)")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--explain", action="store_true", help="each scaled field: base, raw scaled and rounded value")
    command("schema", cmd_schema, "print the JSON Schema of the spec language (for editor autocompletion)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SPEC_ERROR
    except BrokenPipeError:  # e.g. `archspec summary ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"archspec {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug in archspec, not in the spec: one line unless debugging
        if os.environ.get("ARCHSPEC_DEBUG"):
            raise
        print(f"archspec {args.command}: internal error ({type(exc).__name__}: {exc}); "
              "set ARCHSPEC_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
