"""The `predict` and `export` commands: classify images with a spec and its weights, and write a spec
as ONNX, a `torch.export` program (.pt2) or a standalone PyTorch file.

`archspec/cli.py` wires them in next to its other commands (its `command()` adds --set, --variant, --phi):

    add_predict_arguments(command("predict", cmd_predict, PREDICT_HELP))
    add_export_arguments(command("export", cmd_export, EXPORT_HELP))

As everywhere in archspec, a spec problem prints one located line and exits 2, and so does an input file
`predict` refuses (an image or labels file that is missing, unreadable or over its size bound: InputError);
any other failure (weights that do not fit the spec, an existing output) prints one line and exits 1.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from .args import add_allow_large, add_weight_options, check_fits, inputs, load_spec, positive_int
from ..errors import InputError, UsageError, one_line
from ..units import human_bytes

PREDICT_HELP = "classify images: the spec's preprocessing (and --tta, its test-time augmentation), top-k classes"
EXPORT_HELP = "write a spec as ONNX, a torch.export program (.pt2) or a standalone PyTorch source file"
PROGRESS_MIN_IMAGES = 2  # a progress bar (on stderr) from this many images
CHECK_TOLERANCE = 1e-3  # export: the largest difference from the eager model's outputs that passes
LABELS_MAX_BYTES = 16 * 2**20  # predict --labels: a larger file is refused before it is read
IMAGE_MAX_BYTES = 256 * 2**20  # predict: image files over this are refused unread
IMAGE_MAX_PIXELS = 89_478_485  # predict: larger images are refused before decoding (Pillow's warning threshold)


def add_predict_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow reads)")
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help="a torchvision/timm state_dict (torch.save) or an archspec checkpoint")
    add_weight_options(parser)
    parser.add_argument("--tta", action="store_true",
                        help="average the softmax over the spec's test-time views (its `tta:`, else ten_crop)")
    parser.add_argument("--topk", type=positive_int, default=5, metavar="K", help="classes to show per image (default 5)")
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line (default: the torchvision "
                        "reference's categories where the spec has one and as many classes, else class indices)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--batch-size", type=positive_int, default=16, metavar="N", help="images per forward pass")
    add_allow_large(parser)
    return parser


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("spec", metavar="SPEC")
    parser.add_argument("--format", required=True, choices=["onnx", "pt2", "python"],
                        help="onnx (checked in onnxruntime), pt2 (torch.export), python (a standalone .py)")
    parser.add_argument("-o", "--output", metavar="FILE", help="default: ./SPEC_NAME.onnx|.pt2|.py")
    parser.add_argument("--weights", metavar="FILE", help="a torchvision/timm state_dict or archspec checkpoint "
                                                         "(python: written beside the .py as FILE.pth)")
    add_weight_options(parser)
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="do not run the written file against the eager model")
    parser.add_argument("--deploy", action="store_true",
                        help="export the deploy form: batch norms folded into the convs, no dropout or auxiliary heads")
    add_allow_large(parser)
    return parser


def _regular_file(path: str, what: str, max_bytes: int) -> None:
    """An InputError unless `path` is a regular file of at most `max_bytes` (not /dev/zero, a FIFO, a folder)."""
    file = Path(path)
    if not file.exists():
        raise InputError(f"no such {what}: {path}")
    if not file.is_file():
        raise InputError(f"{what} {path} is not a regular file")
    size = file.stat().st_size
    if size > max_bytes:
        raise InputError(f"{what} {path} is {human_bytes(size)}, over the {human_bytes(max_bytes)} predict reads")


def read_labels(path: str, classes: int) -> list[str]:
    """`classes` names, one per line, from a regular file of at most LABELS_MAX_BYTES; InputError otherwise."""
    _regular_file(path, "labels file", LABELS_MAX_BYTES)
    try:
        with open(path, "rb") as f:
            data = f.read(LABELS_MAX_BYTES + 1)  # bounded even if the file grew since the check
        if len(data) > LABELS_MAX_BYTES:
            raise InputError(f"labels file {path} is over the {human_bytes(LABELS_MAX_BYTES)} predict reads")
        lines = data.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels from {path}: {one_line(exc)}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != classes:
        raise InputError(f"{path} has {len(lines)} labels but the network has {classes} classes")
    return [line.strip() for line in lines]


def reference_categories(spec: Any) -> list[str] | None:
    """The class names of the spec's torchvision reference (`reference: torchvision:NAME`), from its weights'
    metadata (no download), when the network has as many classes; else None (timm, no torchvision, ...)."""
    package, _, name = (spec.reference or "").partition(":")
    if package != "torchvision":
        return None
    try:
        import torchvision

        categories = torchvision.models.get_model_weights(name).DEFAULT.meta.get("categories")
    except (ImportError, ValueError, KeyError, AttributeError):
        return None
    return list(categories) if categories and (len(categories),) == tuple(spec.output_shape) else None


def open_image(path: str) -> Any:
    """The decoded PIL image at `path`; an InputError (one line) for a missing, unreadable or too large file,
    refused before decoding."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    _regular_file(path, "image", IMAGE_MAX_BYTES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by its size
            with Image.open(path) as image:
                if image.width * image.height > IMAGE_MAX_PIXELS:  # Pillow itself refuses only twice as many
                    raise Image.DecompressionBombError(f"{image.width}x{image.height} pixels")
                image.load()
                return image.copy()
    except Image.DecompressionBombError as exc:
        raise InputError(f"image {path} is too large to decode ({one_line(exc)}); predict decodes at most "
                         f"{IMAGE_MAX_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # SyntaxError: some broken files
        raise InputError(f"cannot read image {path}: {one_line(exc)}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    spec = load_spec(args)
    missing = [p for p in args.images if not Path(p).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"no such image: {missing[0]}{more}")
    for path in args.images:  # every file before any work: a folder, a device or a huge file is refused now
        _regular_file(path, "image", IMAGE_MAX_BYTES)
    if len(spec.output_shape) != 1:
        raise UsageError(f"{spec.name} outputs {'x'.join(map(str, spec.output_shape))}, not one score per class; "
                         "predict needs a classifier")
    classes = spec.output_shape[0]
    labels = read_labels(args.labels, classes) if args.labels else None

    import torch

    from ..tools.bench import resolve_device
    from ..backend.compiler import compile_spec
    from ..backend.interop import load_weights
    from ..backend.tta import preprocess, resize_size, tta_of, with_tta

    device = resolve_device(args.device)
    views = tta_of(spec).views if args.tta else 1
    check_fits(args, spec, device, min(args.batch_size, len(args.images)) * views)  # before allocating
    labels = labels or reference_categories(spec)
    model = compile_spec(spec, device)
    report = load_weights(model, args.weights, mapping=args.map, verify=args.verify)
    print(f"weights: {report.summary()} from {args.weights}", file=sys.stderr)
    net = with_tta(model, spec) if args.tta else model
    net.eval()
    if args.tta:
        tta = tta_of(spec)
        print(f"tta: {tta.mode} ({tta.views} views of {'x'.join(map(str, spec.input.shape[1:]))}, "
              f"resized to {resize_size(spec, tta=True)})", file=sys.stderr)
    k = min(args.topk, classes)
    with _progress(len(args.images)) as advance:
        for start in range(0, len(args.images), args.batch_size):
            paths = args.images[start:start + args.batch_size]
            x = torch.stack([preprocess(open_image(p), spec, tta=args.tta) for p in paths]).to(device)
            with torch.no_grad():
                out = net(x)
            probs = out if args.tta else out.softmax(-1)
            top = probs.float().cpu().topk(k, dim=-1)
            for path, values, indices in zip(paths, top.values.tolist(), top.indices.tolist()):
                print(path)
                for p, i in zip(values, indices):
                    print(f"  {p:8.4f}  {i:>5}  {labels[i]}" if labels else f"  {p:8.4f}  {i:>5}")
                advance()
    return 0


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr, when it is a terminal, for more than one image; yields `advance()`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                  transient=True, disable=total < PROGRESS_MIN_IMAGES or not console.is_terminal) as bar:
        task = bar.add_task("predict", total=total)
        yield lambda: bar.advance(task)


def cmd_export(args: argparse.Namespace) -> int:
    spec = load_spec(args)

    from ..backend.compiler import compile_spec
    from ..exports.formats import EXAMPLE_BATCH, check_targets, default_output, export
    from ..backend.interop import load_weights, verify_transfer

    if args.map and not args.weights:
        raise UsageError("--map says where the tensors of --weights go; give --weights too")
    out = Path(args.output) if args.output else default_output(spec, args.format)
    protect = inputs(args)
    check_targets(args.format, out, bool(args.weights), protect, force=args.force)  # before any work
    check_fits(args, spec, "cpu", EXAMPLE_BATCH + 1)  # the check runs the exported model on one more image
    model = compile_spec(spec)
    if args.weights:
        report = load_weights(model, args.weights, mapping=args.map, verify=args.verify)
        print(f"weights: {report.summary()} from {args.weights}", file=sys.stderr)
    elif args.verify:
        print(f"verified: outputs equal {spec.reference}'s within {verify_transfer(model):.2g} (relative)",
              file=sys.stderr)
    result = export(spec, args.format, out, model=model, write_weights=bool(args.weights), check=args.check,
                    protect=protect, force=args.force, deploy=args.deploy)
    shape = ", ".join(["batch", *map(str, spec.input.shape)])
    print("wrote " + " and ".join(f"{f} ({human_bytes(f.stat().st_size)})" for f in result.files))
    print(f"  {spec.name}, eval mode: input ({shape}) -> ({', '.join(['batch', *map(str, spec.output_shape)])})")
    if result.max_abs_diff is not None:
        runner = {"onnx": "onnxruntime", "pt2": "the loaded program", "python": "the generated module"}[args.format]
        if not result.max_abs_diff <= CHECK_TOLERANCE:
            raise ValueError(f"{result.path} was written, but {runner} differs from the eager model by "
                             f"{result.max_abs_diff:.3g} (more than {CHECK_TOLERANCE:g})")
        print(f"  checked: {runner} matches the eager model (max abs diff {result.max_abs_diff:.2g})")
    return 0
