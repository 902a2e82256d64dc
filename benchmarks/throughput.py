"""Throughput of archspec's compiled specs against torchvision's hand-written models, in one process.

    python benchmarks/throughput.py                 # CPU: fp32, batch 8, eager and compiled
    python benchmarks/throughput.py --device cuda   # GPU: bf16 autocast, channels_last, batch 256

For ResNet-50, EfficientNet-B0, MobileNet-V2 and VGG-16 it times an inference forward pass and a
training step (forward, cross-entropy, backward, SGD step), eager and under torch.compile (inductor),
ours and torchvision's with the same settings (archspec.tools.bench: warm-up, then the two models' timed
iterations interleaved in rounds, median latency with device synchronisation). It prints each ratio
ours/torchvision of throughput (the median of the rounds' ratios, a paired comparison) and writes
them to benchmarks/results/throughput_<device>.txt, which names the processor or the card (rewritten
after every measurement, so a run cut short keeps what it measured). `--time-budget S` skips the
measurements that would start after S seconds.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from archspec.tools.bench import BenchReport, BenchSettings, bench, device_name, resolve_device  # noqa: E402
from archspec.files import write_atomic  # noqa: E402

MODELS = ["resnet50", "efficientnet_b0", "mobilenet_v2", "vgg16"]
TASKS = ["infer", "train"]
MODES = ["eager", "compiled"]


def device_tag(device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu"
    return "cuda_" + re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--batch", type=int, help="default: 8 on cpu, 256 on cuda")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), help="default: none on cpu, bf16 on cuda")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="default: off on cpu, on on cuda")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated spec names (default: %(default)s)")
    p.add_argument("--tasks", default=",".join(TASKS), help="infer, train (default: both)")
    p.add_argument("--modes", default=",".join(MODES), help="eager, compiled (default: both)")
    p.add_argument("--warmup", type=int, help="untimed iterations per model (default: 2 on cpu, 5 on cuda)")
    p.add_argument("--iters", type=int, help="timed iterations per model (default: 20 on cpu, 30 on cuda)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--time-budget", type=float, metavar="S", help="start no measurement after S seconds")
    p.add_argument("--min-ratio", type=float, default=0.98, help="the bar every ratio must reach (default 0.98)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results",
                   help="folder of the results file throughput_<device>.txt (default: benchmarks/results)")
    p.add_argument("--out", type=Path, help="results file (default: OUT_DIR/throughput_<device>.txt)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        print(f"throughput.py: {exc}", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    amp = args.amp or ("bf16" if gpu else "none")
    out = args.out or args.out_dir / f"throughput_{device_tag(device)}.txt"
    common = dict(device=str(device), batch=args.batch or (256 if gpu else 8), amp=None if amp == "none" else amp,
                  channels_last=gpu if args.channels_last is None else args.channels_last,
                  warmup=args.warmup or (5 if gpu else 2), iters=args.iters or (30 if gpu else 20))
    if gpu:
        torch.backends.cudnn.benchmark = True  # both models alike; cuDNN picks its fastest kernels
    import torchvision

    header = [
        f"# archspec vs torchvision throughput ({datetime.datetime.now().isoformat(timespec='seconds')})",
        f"# device: {device} = {device_name(device)}",
        f"# torch {torch.__version__}, torchvision {torchvision.__version__}, python {platform.python_version()}, "
        f"{platform.machine()}",
        f"# settings: batch {common['batch']}, {common['amp'] or 'fp32'}, "
        f"{'channels_last' if common['channels_last'] else 'contiguous (NCHW)'}, "
        f"{common['warmup']} warm-up + {common['iters']} timed iterations per model, interleaved ABBA; "
        "latency = median; ratio = median over the rounds of tv latency / ours in the same round (paired); "
        "compiled: inductor, ours with fullgraph=True",
        f"# command: python benchmarks/throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
        "",
        f"{'model':<17}{'task':<7}{'mode':<10}{'ours img/s':>12}{'tv img/s':>12}{'ratio':>8}"
        f"{'ours ms':>10}{'tv ms':>10}{'IQR ours/tv':>13}{'ours MiB':>10}{'tv MiB':>10}{'compile s ours/tv':>19}",
    ]
    rows: list[str] = []
    ratios: list[float] = []
    skipped: list[str] = []
    start = time.perf_counter()

    def write(final: bool = False) -> None:
        lines = header + rows
        if skipped:
            lines += ["", "skipped (time budget): " + ", ".join(skipped)]
        if ratios:
            low = min(ratios)
            verdict = "yes" if low >= args.min_ratio else "NO"
            lines += ["", f"lowest ratio {low:.3f}; every ratio >= {args.min_ratio}: {verdict}"
                          + ("" if final else " (so far; run in progress)")]
        write_atomic(out, lambda tmp: tmp.write_text("\n".join(lines) + "\n"), force=True)

    print("\n".join(header[:5]), flush=True)
    models, tasks = args.models.split(","), [t for t in TASKS if t in args.tasks.split(",")]
    jobs = []  # eager: task by task; compiled: model by model (ResNet-50's inference and training first)
    if "eager" in args.modes.split(","):
        jobs += [("eager", task, name) for task in tasks for name in models]
    if "compiled" in args.modes.split(","):
        jobs += [("compiled", task, name) for name in models for task in tasks]
    for mode, task, name in jobs:
        label = f"{name} {task} {mode}"
        if args.time_budget and time.perf_counter() - start > args.time_budget:
            skipped.append(label)
            continue
        torch._dynamo.reset()  # fresh compile caches: no recompile limit shared between models
        settings = BenchSettings(train=task == "train", compile=mode == "compiled", fullgraph=True, **common)
        print(f"\n== {label}", flush=True)
        try:
            report: BenchReport = bench(ROOT / "specs" / f"{name}.yaml", settings=settings, reference=True)
        except Exception as exc:  # noqa: BLE001 - record it and go on with the other measurements
            rows.append(f"{name:<17}{task:<7}{mode:<10}  error: {type(exc).__name__}: {str(exc)[:200]}")
            print(rows[-1], flush=True)
            write()
            continue
        print(report.text(), flush=True)
        ours, ref = report.timings
        mib = [f"{t.peak_memory / 2**20:,.0f}" if t.peak_memory is not None else "n/a" for t in (ours, ref)]
        compiled = f"{ours.first_call_s:.0f}/{ref.first_call_s:.0f}" if settings.compile else "-"
        rows.append(f"{name:<17}{task:<7}{mode:<10}{ours.images_per_s:>12,.1f}{ref.images_per_s:>12,.1f}"
                    f"{report.ratio:>8.3f}{ours.latency * 1000:>10.1f}{ref.latency * 1000:>10.1f}"
                    f"{f'{ours.spread():.0%}/{ref.spread():.0%}':>13}{mib[0]:>10}{mib[1]:>10}{compiled:>19}")
        ratios.append(report.ratio)
        write()
        del report, ours, ref
        if device.type == "cuda":
            torch.cuda.empty_cache()
    write(final=True)
    print("\n" + "\n".join(header[5:] + rows), flush=True)
    if skipped:
        print("skipped (time budget): " + ", ".join(skipped))
    if ratios:
        print(f"lowest ratio {min(ratios):.3f} (bar {args.min_ratio}); results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
