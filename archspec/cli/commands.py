"""The `archspec` command line: a thin shell over the Python API.

Spec problems print one located line and exit 2, as do input files a command refuses (InputError: predict's
images and labels) and an output that cannot be written (files.OutputError); other failures print one
line and exit 1.
torch is imported only by the commands that build or run a model.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..language.blocks.base import fmt_shape
from .args import add_allow_large, add_jobs, add_weight_options, check_fits, inputs, load_spec, positive_int
from .inference import EXPORT_HELP, PREDICT_HELP, add_export_arguments, add_predict_arguments, cmd_export, cmd_predict
from ..errors import InputError, SpecError, UsageError
from ..fanout import fan_out
from ..files import OutputError, check_output
from ..language.spec import load
from ..ir.memory import DTYPES
from ..units import human
from .perf import add_bench_arguments, add_train_arguments, cmd_bench, cmd_train

EXIT_SPEC_ERROR = 2


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for line, error in fan_out(functools.partial(_validate_one, args), args.specs, args.jobs):
        if error:
            print(error, file=sys.stderr)
            status = EXIT_SPEC_ERROR
        else:
            print(line)
    return status


def _validate_one(args: argparse.Namespace, path: str) -> tuple[str, str]:
    """validate's line for one spec, or its error."""
    try:
        spec = load_spec(args, path)
    except SpecError as exc:
        return "", str(exc)
    return (f"ok  {path}  {spec.name}: {spec.params:,} params, {human(spec.macs, 'MACs')}, "
            f"output {fmt_shape(spec.output_shape)}"), ""


def cmd_build(args: argparse.Namespace) -> int:
    spec = load_spec(args, args.spec)
    if args.deploy and args.output:
        raise UsageError("a checkpoint holds the trainable network; write it without --deploy")
    if args.dtype and not args.deploy:
        raise UsageError("--dtype is the deploy form's weight dtype; give --deploy too")
    if args.output:  # before the build; write_atomic checks again, atomically, when it publishes
        check_output(args.output, force=args.force, protect=inputs(args))
    import torch

    from ..tools.bench import prepare_model, resolve_device, synchronize
    from ..backend.compiler import compile_spec, example_input
    from ..backend.interop import load_weights, verify_transfer

    device = resolve_device(args.device, allow_meta=True)
    if args.deploy and device.type == "meta":
        raise UsageError("--deploy folds weights and runs the network; build it on cpu or cuda, not meta")
    check_fits(args, spec, device)  # before allocating
    start = time.perf_counter()
    model = compile_spec(spec, device)
    built = time.perf_counter() - start
    if args.map and not args.weights:
        raise UsageError("--map says where the tensors of --weights go; give --weights too")
    report = load_weights(model, args.weights, mapping=args.map, verify=args.verify) if args.weights else None
    verified = report.verified if report else verify_transfer(model) if args.verify else None
    if report and not args.json:
        print(report)
    model.eval()
    if args.deploy:  # folded, channels_last, in --dtype, compiled for inference (archspec/backend/deploy.py)
        from ..backend.deploy import deploy, deploy_spec

        model = runnable = deploy(model, args.dtype)
        spec = deploy_spec(spec)  # the deploy form's parameters: no norms, conv biases, no auxiliary heads
    else:
        runnable = prepare_model(model, channels_last=args.channels_last, compile=args.compile)
    x = example_input(spec, 1, device, channels_last=args.channels_last)
    start = time.perf_counter()
    with torch.no_grad():
        y = runnable(x)
    synchronize(device)
    forward = time.perf_counter() - start
    measured = sum(p.numel() for p in model.parameters())
    if args.json:
        print(json.dumps({"spec": spec.name, "device": str(device), "parameters": measured, "macs": spec.macs,
                          "input": [1, *spec.input.shape], "output": list(y.shape), "verified": verified,
                          "weights": report.to_dict() if report else None}, indent=2))
    else:
        _print_build(spec, device, built, measured, y, forward, verified)
    if args.output:
        from ..backend.checkpoint import save

        out = save(model, args.output, force=args.force, protect=inputs(args))
        print(f"  checkpoint   {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_build(spec: Any, device: Any, built: float, measured: int, y: Any, forward: float,
                 verified: float | None) -> None:
    print(f"{spec.name}: built on {device} in {built * 1000:.0f} ms")
    print(f"  parameters   {measured:,}" + ("" if measured == spec.params else f"  (analysis says {spec.params:,}!)"))
    print(f"  MACs         {spec.macs:,} ({human(spec.macs)})")
    print(f"  input        {fmt_shape((1, *spec.input.shape))}")
    # On meta nothing is computed: the time would be torch's one-off loading of its meta kernels.
    timing = "shapes only on meta" if y.device.type == "meta" else f"one forward pass: {forward * 1000:.0f} ms"
    print(f"  output       {fmt_shape(tuple(y.shape))}  ({timing})")
    if verified is not None:
        print(f"  verified     outputs equal {spec.reference}'s within {verified:.2g} (relative; same weights)")


def _show(result: Any, text: str) -> None:
    """A rich table on a terminal, plain aligned text otherwise (pipes, files, tests)."""
    if sys.stdout.isatty():
        from rich.console import Console

        console = Console()
        needed = console.measure(result, options=console.options.update_width(100_000)).maximum
        if needed > console.width:  # never truncate a number: let the terminal wrap long lines instead
            console = Console(width=needed)
        console.print(result)
    else:
        print(text)


def cmd_summary(args: argparse.Namespace) -> int:
    from ..reports.summary import summary

    result = summary(load_spec(args, args.spec), args.depth, args.batch, args.dtype)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _show(result, result.text())
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from ..reports.diff import diff

    if args.b is None and not (args.set or args.variant or args.phi is not None):
        raise UsageError("nothing to compare: give a second spec, or --set / --variant / --phi for the first one")
    a = load(args.a)
    b = load_spec(args, args.b or args.a)
    edits = [f"--set {s}" for s in args.set or []] + ([f"--variant {args.variant}"] if args.variant else []) + (
        [f"--phi {args.phi:g}"] if args.phi is not None else [])
    result = diff(a, b, args.depth, args.batch, args.dtype, labels=(args.a, " ".join([args.b or args.a, *edits])))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _show(result.rich(args.all), result.text(args.all))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    base = load_spec(args, args.spec)
    if args.phi is not None:  # one row: the spec (with its --variant and --set) at phi; the others are not read
        members: list[tuple[str | None, Any]] = [(f"phi={args.phi:g}", base)]
    else:
        names = [args.variant] if args.variant else list(base.variants) or [None]
        members = [(name, load_spec(args, args.spec, name) if name else base) for name in names]
        if not args.variant and not any(_row(spec) == _row(base) for _, spec in members):
            members.insert(0, (None, base))  # the spec itself is none of its rows (a child that changes one)
    first = max(12, *(len(name or spec.name) + 2 for name, spec in members))  # long names keep the columns
    print(f"{'variant':<{first}}{'width':>8}{'depth':>8}{'resolution':>12}{'params':>16}{'MACs':>18}")
    for name, spec in members:
        size = "x".join(str(d) for d in spec.input.shape[1:])
        print(f"{name or spec.name:<{first}}{spec.scaling.width:>8.3g}{spec.scaling.depth:>8.3g}{size:>12}"
              f"{spec.params:>16,}{spec.macs:>18,}")
    if args.explain:
        for name, spec in members:
            print(f"\n{name or spec.name}: width x{spec.scaling.width:.4g} (multiples of {spec.scaling.divisor}, "
                  f"at most {1 - spec.scaling.round_limit:.0%} down), depth x{spec.scaling.depth:.4g} (rounded up)")
            changed = [f for f in spec.scaled_fields if f.raw != f.base]  # the fields a multiplier changed
            if changed:
                print(f"  {'where':<24}{'field':<10}{'base':>8}{'x factor':>12}{'rounded':>9}")
            for f in changed:
                print(f"  {f.path:<24}{f.field:<10}{f.base:>8}{f.raw:>12.2f}{f.scaled:>9}")
            for node in spec.analyse().walk():  # what a block derives from its parameters (a RegNet's stages)
                for i, line in enumerate(node.block.derivation(node.in_shape)):
                    print(f"  {node.path} ({node.type}): {line}" if i == 0 else f"    {line}")
    return 0


def _row(spec: Any) -> tuple[Any, ...]:
    """What a row of `scale` shows."""
    return spec.scaling.width, spec.scaling.depth, spec.input.shape, spec.params, spec.macs


def cmd_diagram(args: argparse.Namespace) -> int:
    """Draw each spec; a missing, failing or too slow Graphviz `dot` is exit 2 with one line per spec."""
    from ..reports.diagram import INSTALL_HINT, RenderError, render

    specs = [Path(p) for p in args.specs]
    folder = Path(args.output) if args.output and (len(specs) > 1 or _is_dir(Path(args.output))) else None
    if len(specs) > 1 and folder is None:
        folder = Path(".")
    status = 0
    drawn: dict[Path, Path] = {}  # target -> the spec drawn there in this run
    for path in specs:
        spec = load_spec(args, str(path))
        target = (folder / f"{spec.name}.svg") if folder else Path(args.output or f"{spec.name}.svg")
        if target in drawn:
            print(f"archspec diagram: {path}: its name '{spec.name}' is {drawn[target]}'s too, whose diagram is "
                  f"{target}; draw them to different folders", file=sys.stderr)
            status = EXIT_SPEC_ERROR
            continue
        drawn[target] = path
        try:
            written, rendered = render(spec, target, args.detail, args.rankdir, inputs=tuple(specs))
        except RenderError as exc:
            print(f"archspec diagram: {path}: {exc}; nothing written", file=sys.stderr)
            status = EXIT_SPEC_ERROR
            continue
        if not rendered and written.suffix == ".dot" and target.suffix != ".dot":
            print(f"archspec diagram: {path}: wrote {written} but not {target}: Graphviz's `dot` is not on the PATH; "
                  f"install it ({INSTALL_HINT}) and rerun", file=sys.stderr)
            status = EXIT_SPEC_ERROR
        else:
            print(written)
    return status


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. a name too long: the writer then says so, as for any output
        return False


def cmd_list(args: argparse.Namespace) -> int:
    """The specs of the folders given (default: the bundled ones); a spec that does not load is one line, exit 2."""
    from ..reports.catalogue import BUNDLED, catalogue, spec_files, text

    entries, errors = catalogue(spec_files([Path(f) for f in args.folders] or [BUNDLED]), cached=not args.no_cache,
                               jobs=args.jobs)
    for error in errors:
        print(error, file=sys.stderr)
    print(json.dumps([e.to_dict() for e in entries], indent=2) if args.json else text(entries))
    return EXIT_SPEC_ERROR if errors else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from ..language.schema import editor_schema

    print(json.dumps(editor_schema(load(args.spec, analyse=False) if args.spec else None), indent=2))
    return 0


def _summary_options(c: argparse.ArgumentParser) -> None:
    """Options of `summary` and `diff`."""
    def count(text: str) -> int:
        if not text.isdigit():
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'")
        return int(text)

    c.add_argument("--depth", type=count, default=1, metavar="N",
                   help="rows down to nesting level N (1: top-level layers, the default; 0: totals only)")
    c.add_argument("--batch", type=positive_int, default=1, metavar="B", help="batch size for the memory figures (default 1)")
    c.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="element type for the memory figures (default fp32)")
    c.add_argument("--json", action="store_true", help="machine-readable output")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archspec", description="Declarative architecture specs for CNNs.")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(func=func)
        if name not in ("schema", "list"):
            c.add_argument("--set", action="append", metavar="PATH=VALUE",
                           help="override a value, e.g. --set layers.layer3.repeat=36 (repeatable)")
            c.add_argument("--variant", metavar="NAME", help="a row of the spec's variants table, e.g. b3")
            c.add_argument("--phi", type=float, metavar="PHI", help="a compound-scaling member (EfficientNet's phi)")
        return c

    c = command("validate", cmd_validate, "check specs: fields, types and every shape (no torch)")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    add_jobs(c)
    c = command("build", cmd_build, "compile a spec, run one dummy forward pass, optionally save a checkpoint")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, meta ... (default: cpu)")
    c.add_argument("--weights", metavar="FILE", help="a torchvision/timm state_dict or archspec checkpoint")
    add_weight_options(c)
    c.add_argument("--json", action="store_true", help="machine-readable output, with the full weight mapping")
    c.add_argument("-o", "--output", metavar="FILE", help="write a checkpoint (resolved spec + state_dict), atomically")
    c.add_argument("--force", action="store_true", help="replace an existing --output file")
    add_allow_large(c)
    c.add_argument("--channels-last", action="store_true", help="channels_last memory format for the forward pass")
    c.add_argument("--compile", action="store_true", help="torch.compile the model for the forward pass")
    c.add_argument("--deploy", action="store_true", help="the inference form: batch norms folded into the convs, "
                   "channels_last, --dtype weights, compiled with freezing (and CUDA graphs on cuda)")
    c.add_argument("--dtype", choices=("fp32", "bf16", "fp16"),
                   help="with --deploy: the weights' dtype (default fp32)")
    c = command("summary", cmd_summary, "per-block shapes, parameters, MACs and hyper-parameters, then totals "
                                        "and memory, from the spec alone (no torch)")
    c.add_argument("spec", metavar="SPEC")
    _summary_options(c)
    c = command("diff", cmd_diff, "what changes between two specs, or a spec and its --set/--variant/--phi edit, "
                                  "block by block and in the totals (no torch); --set, --variant and --phi apply to B")
    c.add_argument("a", metavar="A", help="the spec before")
    c.add_argument("b", metavar="B", nargs="?", help="the spec after (default: A, edited by --set/--variant/--phi)")
    _summary_options(c)
    c.add_argument("--all", action="store_true", help="list the unchanged blocks too")
    c = command("scale", cmd_scale, "a family's variants: width, depth, resolution, params, MACs (no torch)")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--explain", action="store_true", help="each scaled field: base, raw scaled and rounded value")
    c = command("diagram", cmd_diagram, "draw specs as Graphviz diagrams from the spec alone (no torch)")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("-o", "--output", metavar="OUT", help="OUT.svg|.png|.pdf|.dot, or a folder for several specs "
                                                          "(default: SPEC_NAME.svg here)")
    c.add_argument("--detail", choices=("stage", "block", "layer"), default="block", help="default: block")
    c.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB", help="layout direction (default TB)")
    add_predict_arguments(command("predict", cmd_predict, PREDICT_HELP))
    add_export_arguments(command("export", cmd_export, EXPORT_HELP))
    add_bench_arguments(command("bench", cmd_bench, "images/s, latency and peak memory, beside the torchvision/timm "
                                                    "reference with --reference"))
    add_train_arguments(command("train", cmd_train, "train on scikit-learn's digits (8x8, 10 classes; use --set to "
                                                    "fit the spec), per-epoch loss and held-out accuracy"))
    c = command("list", cmd_list, "the bundled specs (or a folder's): name, family, params, GMACs, input, and the "
                                  "reference each equals exactly or the source it follows (no torch)")
    c.add_argument("folders", nargs="*", metavar="FOLDER", help="folders of specs (default: the bundled specs)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--no-cache", action="store_true", help="validate and analyse every spec again (by default a "
                   "spec's row is reused while its files and archspec are unchanged: ~/.cache/archspec)")
    add_jobs(c)
    c = command("schema", cmd_schema, "print the JSON Schema of the spec language (for editor autocompletion)")
    c.add_argument("spec", nargs="?", metavar="SPEC", help="also list the block types this spec defines ('blocks:')")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # No pydantic plugin observes archspec's own validation; looking for them reads the metadata of every
    # installed distribution (about 25 ms of each command). An explicit setting is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SPEC_ERROR
    except (InputError, OutputError, UsageError) as exc:  # input refused (an image, a labels file), an output that
        # exists, is no file, or found the disk full, options that do not go together: one line, exit 2
        print(f"archspec {args.command}: {exc}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    except BrokenPipeError:  # e.g. `archspec summary ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"archspec {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:  # a dependency this command needs (rich, graphviz, torch) is missing
        print(f"archspec {args.command}: needs the Python package '{exc.name}', which {sys.executable} lacks; "
              "`pip install -e .` installs archspec's dependencies", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug in archspec, not in the spec: one line unless debugging
        if os.environ.get("ARCHSPEC_DEBUG"):
            raise
        print(f"archspec {args.command}: internal error ({type(exc).__name__}: {exc}); "
              "set ARCHSPEC_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
