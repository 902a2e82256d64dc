"""The deploy form (archspec/backend/deploy.py) against the torchvision model at its best, in one process.

    python benchmarks/deploy.py                  # CPU: fp32, batch 8; the reference torch.compiled
    python benchmarks/deploy.py --device cuda    # GPU: bf16 weights, batch 256; the reference compiled
                                                 # with bf16 autocast and channels_last

For ResNet-50, EfficientNet-B0, MobileNet-V2 and ResNet-18 it times inference (archspec.bench with
deploy: warm-up and compilation, then interleaved rounds; the ratio is the median of the rounds' paired
ratios) and writes benchmarks/results/deploy_<device>.txt with the machine's load (`/proc/loadavg`)
before and after, rewritten after each model. `--frozen-reference` adds a row per model: torchvision's
model with inductor freezing too (what the deploy form's compile settings would give the reference).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from archspec.tools.bench import BenchSettings, bench, device_name, measure, resolve_device  # noqa: E402
from archspec.files import write_atomic  # noqa: E402
from archspec.backend.references import reference_model  # noqa: E402
from archspec.language.spec import load  # noqa: E402

MODELS = ["resnet50", "efficientnet_b0", "mobilenet_v2", "resnet18"]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


class Frozen(torch.nn.Module):
    """A module compiled by inductor with freezing (the config is read while dynamo traces)."""

    def __init__(self, model: torch.nn.Module, channels_last: bool) -> None:
        super().__init__()
        self.model = model.eval().to(memory_format=torch.channels_last) if channels_last else model.eval()
        self._run = torch.compile(self.model.forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        with torch.no_grad(), inductor_config.patch(freezing=True):
            return self._run(x)


def frozen_reference(name: str, settings: BenchSettings) -> float:
    """torchvision compiled with freezing against torchvision compiled as before (both at their best
    otherwise), interleaved: the paired ratio of throughputs."""
    spec = load(ROOT / "specs" / f"{name}.yaml")
    ref = settings.reference_at_best()
    compiled = reference_model(spec.reference).eval()
    if ref.channels_last:
        compiled = compiled.to(memory_format=torch.channels_last)
    models = [("frozen", Frozen(reference_model(spec.reference), ref.channels_last)),
              ("compiled", torch.compile(compiled))]
    timings = measure(models, tuple(spec.input.shape), replace(ref, compile=False), progress=False)
    return statistics.median(c / f for f, c in zip(timings[0].latencies, timings[1].latencies))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, help="default: 8 on cpu, 256 on cuda")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help="ours' weights (default: fp32 on cpu, bf16 on cuda)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--warmup", type=int, help="default: 2 on cpu, 5 on cuda")
    p.add_argument("--iters", type=int, help="default: 20 on cpu, 30 on cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--autotune", action="store_true", help="max-autotune for ours")
    p.add_argument("--frozen-reference", action="store_true", help="also time torchvision with freezing")
    p.add_argument("--time-budget", type=float, metavar="S", help="start no model after S seconds")
    p.add_argument("--out", type=Path, help="default: benchmarks/results/deploy_<device>.txt")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True  # both models alike
    dtype = args.dtype or ("bf16" if gpu else "fp32")
    settings = BenchSettings(device=str(device), batch=args.batch or (256 if gpu else 8),
                             amp=None if dtype == "fp32" else dtype, deploy=True, autotune=args.autotune,
                             warmup=args.warmup or (5 if gpu else 2), iters=args.iters or (30 if gpu else 20))
    tag = "cpu" if not gpu else "cuda_" + "_".join(torch.cuda.get_device_name(device).lower().split())
    out = args.out or ROOT / "benchmarks" / "results" / f"deploy_{tag}.txt"
    import torchvision

    header = [f"# archspec deploy form vs torchvision at its best ({datetime.datetime.now().isoformat(timespec='seconds')})",
              f"# device: {device} = {device_name(device)}",
              f"# torch {torch.__version__}, torchvision {torchvision.__version__}, python {platform.python_version()}",
              f"# settings: {settings.describe()}; {settings.warmup} warm-up + {settings.iters} timed iterations "
              "per model, interleaved ABBA; ratio = median over the rounds of tv latency / ours (paired)",
              f"# command: python benchmarks/deploy.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
              f"# load average (1, 5, 15 min) at the start: {load_average()}", "",
              f"{'model':<17}{'ours img/s':>12}{'tv img/s':>12}{'ratio':>8}{'ours ms':>10}{'tv ms':>10}"
              f"{'IQR ours/tv':>13}{'compile s ours/tv':>19}{'load':>20}" + ("  tv frozen/compiled" if args.frozen_reference else "")]
    rows: list[str] = []
    start = time.perf_counter()
    for name in args.models.split(","):
        if args.time_budget and time.perf_counter() - start > args.time_budget:
            rows.append(f"{name:<17}skipped (time budget)")
            continue
        torch._dynamo.reset()
        report = bench(ROOT / "specs" / f"{name}.yaml", settings=settings, reference=True)
        print(report.text(), flush=True)
        ours, ref = report.timings
        row = (f"{name:<17}{ours.images_per_s:>12,.1f}{ref.images_per_s:>12,.1f}{report.ratio:>8.3f}"
               f"{ours.latency * 1000:>10.1f}{ref.latency * 1000:>10.1f}{f'{ours.spread():.0%}/{ref.spread():.0%}':>13}"
               f"{f'{ours.first_call_s:.0f}/{ref.first_call_s:.0f}':>19}{load_average():>20}")
        if args.frozen_reference:
            torch._dynamo.reset()
            row += f"{frozen_reference(name, settings):>21.3f}"
        rows.append(row)
        write_atomic(out, lambda tmp: tmp.write_text("\n".join(header + rows) + "\n"), force=True)
    lines = header + rows + ["", f"# load average at the end: {load_average()}"]
    write_atomic(out, lambda tmp: tmp.write_text("\n".join(lines) + "\n"), force=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
