"""Time compiled specs, and the torchvision/timm models they reproduce, in one process.

    report = archspec.tools.bench.bench("specs/resnet50.yaml", settings=BenchSettings(batch=8), reference=True)
    print(report.text())          # images/s, median latency, peak memory; ours/reference ratio

A timed iteration is one inference forward pass (no_grad, eval mode) or, with `train`, one training
step: forward, cross-entropy, backward and an SGD (momentum) step. Each model is warmed up first (the
first call of a `torch.compile`d model compiles it; that time is reported apart), then the models'
timed iterations are interleaved in rounds (ours, reference | reference, ours | ...) so that a machine
that speeds up or slows down during the run (other processes, clocks) affects both alike. Latency is
the median of the timed iterations, each ended by a device synchronisation; images/s is batch / median.
The ratio is the median of the per-round ratios (`BenchReport.ratio`), a paired comparison.

Peak memory is measured on CUDA (`torch.cuda.max_memory_allocated` during one step, plus the model's
own weights, gradients, optimizer state and input, excluding whatever else is on the device); on the
CPU there is no per-model allocator peak, so it is reported as n/a.
"""
from __future__ import annotations

import contextlib
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import UsageError
from ..backend.compiler import example_input
from ..backend.references import reference_model
from ..language.spec import Spec, as_spec
from .train import loss_of

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class BenchSettings:
    device: str = "cpu"
    batch: int = 8
    train: bool = False          # a training step (forward, loss, backward, SGD step) instead of inference
    compile: bool = False        # torch.compile (inductor), compiled during the warm-up
    fullgraph: bool = False      # compile ours with fullgraph=True (an error at any graph break); the
                                 # reference with torch.compile's default (the code is the same without breaks)
    amp: str | None = None       # "bf16" or "fp16": torch.autocast around forward and loss
    channels_last: bool = False  # model and input in torch.channels_last
    deploy: bool = False         # ours in its deploy form (archspec.backend.deploy; pure `amp` dtype), the reference
                                 # at its best: compiled, and on CUDA bf16 autocast and channels_last
    autotune: bool = False       # with deploy: inductor's max-autotune for ours
    warmup: int = 3              # untimed iterations per model (the first one compiles)
    iters: int = 10              # timed iterations per model

    def __post_init__(self) -> None:
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise UsageError(f"amp must be one of {', '.join(AMP_DTYPES)}, not {self.amp!r}")
        if self.batch < 1 or self.iters < 1 or self.warmup < 1:
            raise UsageError("batch, iters and warmup must be at least 1")
        if self.deploy and self.train:
            raise UsageError("the deploy form runs inference only; time a training step without deploy")

    def reference_at_best(self) -> "BenchSettings":
        """The reference as its users run it at its best, beside our deploy form: torch.compile, and on
        CUDA bf16 autocast (or `amp`) and channels_last."""
        cuda = self.device.startswith("cuda")
        return replace(self, deploy=False, autotune=False, compile=True, channels_last=cuda,
                       amp=self.amp or ("bf16" if cuda else None))

    def describe(self, reference: bool = True) -> str:
        """The settings in words; with `reference`, how the reference beside the deploy form runs."""
        if self.deploy:
            ref = self.reference_at_best()
            return (f"batch {self.batch}, inference; ours deploy form ({self.amp or 'fp32'} weights, folded, "
                    f"channels_last, frozen{', max-autotune' if self.autotune else ''})" + (
                        "; reference " + ", ".join(["compiled", ref.amp or "fp32"]
                                                   + (["channels_last"] if ref.channels_last else [])) if reference else ""))
        return ", ".join([f"batch {self.batch}", "training step" if self.train else "inference",
                          "compiled" if self.compile else "eager", self.amp or "fp32"]
                         + (["channels_last"] if self.channels_last else []))


@dataclass
class Timing:
    label: str
    params: int
    batch: int
    latencies: list[float] = field(default_factory=list)  # seconds per timed iteration
    first_call_s: float = 0.0      # the first warm-up call (includes compilation when compiled)
    peak_memory: int | None = None  # bytes (CUDA), None where not measured

    @property
    def latency(self) -> float:
        """Median seconds per iteration."""
        return statistics.median(self.latencies)

    @property
    def images_per_s(self) -> float:
        return self.batch / self.latency

    def spread(self) -> float:
        """Interquartile range over the median: how steady the timed iterations were."""
        if len(self.latencies) < 4:
            return 0.0
        q = statistics.quantiles(self.latencies, n=4)
        return (q[2] - q[0]) / self.latency


@dataclass
class BenchReport:
    name: str
    settings: BenchSettings
    device_name: str
    input_shape: tuple[int, ...]
    timings: list[Timing]
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Throughput of ours over the reference's (>1: ours is faster), None without a reference: the
        median over the timed rounds of the reference's latency over ours in the same round. The two
        models of a round run back to back, so a machine that speeds up or slows down between rounds
        (a shared host, clocks) drops out of each round's ratio; the medians alone would keep it."""
        if len(self.timings) < 2:
            return None
        ours, ref = self.timings[0].latencies, self.timings[1].latencies
        return statistics.median(r / o for o, r in zip(ours, ref))

    def text(self) -> str:
        s = self.settings
        lines = [f"{self.name} on {s.device} ({self.device_name}): {s.describe(len(self.timings) > 1)}, "
                 f"input {'x'.join(map(str, self.input_shape))}"]
        header = ["model", "params", "images/s", "latency ms", "IQR", "peak memory", "first call s"]
        rows = [[t.label, f"{t.params:,}", f"{t.images_per_s:,.1f}", f"{t.latency * 1000:.2f}", f"{t.spread():.0%}",
                 f"{t.peak_memory / 2**20:,.0f} MiB" if t.peak_memory is not None else "n/a", f"{t.first_call_s:.1f}"]
                for t in self.timings]
        # Each column as wide as its widest cell: the model name left-aligned, the figures right-aligned.
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  " + row[0].ljust(widths[0] + 2) + "".join(
                cell.rjust(w + 2) for cell, w in zip(row[1:], widths[1:])).rstrip())
        if self.ratio is not None:
            lines.append(f"  ratio ours/reference (throughput): {self.ratio:.3f}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def device_name(device: str | torch.device) -> str:
    """The card's or the processor's name (and the CPU thread count torch uses)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads"


def resolve_device(name: str | torch.device, allow_meta: bool = False) -> torch.device:
    """`cpu`, `cuda`, `cuda:1` (and `meta` where allowed: a build that allocates nothing) as a torch.device,
    refusing one this machine does not have."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"'{name}' is not a device; use cpu, cuda, cuda:N" + (" or meta" if allow_meta else "")) from None
    if device.type == "meta" and not allow_meta:
        raise UsageError("this command computes on real data: use cpu or cuda, not meta")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def prepare_model(model: nn.Module, channels_last: bool = False, compile: bool = False, **compile_kwargs: Any) -> nn.Module:
    """channels_last moves the weights (in place) to torch.channels_last; compile wraps the model in
    torch.compile (compiled lazily, on its first call). Feed a channels_last model channels_last input
    (`example_input(..., channels_last=True)`); it also runs on contiguous input."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model, **compile_kwargs)
    return model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensor_bytes(tensors: Iterator[torch.Tensor]) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.device.type == "meta":
            continue
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
    return total


class _Runner:
    """One model's step under the settings: eval forward or a training step."""

    def __init__(self, label: str, model: nn.Module, input_shape: tuple[int, ...], s: BenchSettings,
                 fullgraph: bool = False) -> None:
        self.label, self.settings = label, s
        self.device = torch.device(s.device)
        self.base = model.to(self.device)
        self.params = sum(p.numel() for p in self.base.parameters())
        self.base.train(s.train)
        self.model = prepare_model(self.base, s.channels_last, s.compile, **({"fullgraph": True} if fullgraph else {}))
        self.x = example_input(input_shape, s.batch, self.device, channels_last=s.channels_last)
        self.target: torch.Tensor | None = None
        self.optimiser = torch.optim.SGD(self.base.parameters(), lr=1e-4, momentum=0.9) if s.train else None
        self.scaler = torch.amp.GradScaler(self.device.type) if s.train and s.amp == "fp16" else None
        self.timing = Timing(label, self.params, s.batch)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.settings.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.settings.amp])

    def step(self) -> None:
        if not self.settings.train:
            with torch.no_grad(), self.autocast():
                self.model(self.x)
            return
        with self.autocast():
            out = self.model(self.x)
            if self.target is None:
                logits = out[0] if isinstance(out, tuple) else out
                self.target = torch.randint(0, logits.shape[-1], (self.settings.batch,), device=self.device)
            loss = loss_of(out, self.target)[0]
        self.optimiser.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
        else:
            loss.backward()
            self.optimiser.step()

    def timed(self) -> float:
        start = time.perf_counter()
        self.step()
        synchronize(self.device)
        return time.perf_counter() - start

    def own_bytes(self) -> int:
        tensors: list[torch.Tensor] = [*self.base.parameters(), *self.base.buffers(), self.x]
        tensors += [p.grad for p in self.base.parameters() if p.grad is not None]
        if self.optimiser is not None:
            tensors += [v for state in self.optimiser.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
        return _tensor_bytes(iter(tensors))

    def peak_memory(self) -> int | None:
        """The step's peak on CUDA, attributed to this model alone (see the module's docstring)."""
        if self.device.type != "cuda":
            return None
        synchronize(self.device)
        before = torch.cuda.memory_allocated(self.device)
        own = self.own_bytes()
        torch.cuda.reset_peak_memory_stats(self.device)
        self.step()
        synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) - before + own


class _Display:
    """Progress on stderr: a rich spinner/bar on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True),
                                     transient=True)

    def __enter__(self) -> "_Display":
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def task(self, description: str, total: int) -> Callable[[], None]:
        """Start a phase; returns `advance`."""
        if self.progress is not None:
            task = self.progress.add_task(description, total=total)
            return lambda: self.progress.advance(task)
        if self.enabled:
            print(f"  {description} ...", file=sys.stderr, flush=True)
        return lambda: None


def measure(models: list[tuple[str, nn.Module]], input_shape: tuple[int, ...], settings: BenchSettings,
            progress: bool = True) -> list[Timing]:
    """Warm up (and compile) each model, then time them interleaved; see the module's docstring.
    The first model is ours (the one `settings.fullgraph` applies to)."""
    runners = [_Runner(label, model, input_shape, _settings_of(settings, i), fullgraph=settings.fullgraph and i == 0)
               for i, (label, model) in enumerate(models)]
    with _Display(progress) as display:
        for r in runners:
            what = "compiling and warming up" if settings.compile else "warming up"
            advance = display.task(f"{r.label}: {what}", settings.warmup)
            start = time.perf_counter()
            r.step()
            synchronize(r.device)
            r.timing.first_call_s = time.perf_counter() - start
            advance()
            for _ in range(settings.warmup - 1):
                r.step()
                advance()
            synchronize(r.device)
            r.timing.peak_memory = r.peak_memory()
        advance = display.task("timing " + " / ".join(r.label for r in runners), settings.iters * len(runners))
        for i in range(settings.iters):
            for r in (runners if i % 2 == 0 else runners[::-1]):  # ABBA: neither model always goes first
                r.timing.latencies.append(r.timed())
                advance()
    return [r.timing for r in runners]


def _settings_of(settings: BenchSettings, index: int) -> BenchSettings:
    """Model `index`'s settings: with deploy, ours (0) compiles and converts its input itself and is fed
    the reference's input; the reference runs at its best."""
    if not settings.deploy:
        return settings
    ref = settings.reference_at_best()
    return ref if index else replace(ref, compile=False, amp=None)


def bench(spec: str | Path | Spec, overrides: dict[str, Any] | list[str] | None = None, *,
          settings: BenchSettings = BenchSettings(), reference: bool = False, variant: str | None = None,
          phi: float | None = None, progress: bool = True, seed: int = 0) -> BenchReport:
    """Time a spec's compiled model and, with `reference`, its torchvision/timm model under the same settings."""
    spec = as_spec(spec, overrides, variant=variant, phi=phi)
    from ..backend.compiler import compile_spec

    torch.manual_seed(seed)
    ours = compile_spec(spec)
    trainable = sum(p.numel() for p in ours.parameters())  # the deploy form folds the norms' away
    if settings.deploy:
        from ..backend.deploy import deploy

        ours = deploy(ours, settings.amp, compile=True, autotune=settings.autotune)
    models: list[tuple[str, nn.Module]] = [(f"archspec {spec.name}" + (" deploy" if settings.deploy else ""), ours)]
    notes = []
    if reference:
        if not spec.reference:
            raise UsageError(f"spec {spec.name} names no reference model (its `reference:` field)")
        ref = reference_model(spec.reference)
        models.append((spec.reference, ref))
        theirs = sum(p.numel() for p in ref.parameters())
        if trainable != theirs:
            notes.append(f"parameter counts differ ({trainable:,} vs {theirs:,}): the overrides changed the network, "
                         "so the ratio compares different models")
    timings = measure(models, tuple(spec.input.shape), settings, progress)
    return BenchReport(spec.name, settings, device_name(settings.device), tuple(spec.input.shape), timings, notes)


def explain_graphs(spec: str | Path | Spec, overrides: dict[str, Any] | list[str] | None = None, *,
                   size: int | None = None, batch: int = 2, device: str = "meta",
                   modes: tuple[str, ...] = ("eval", "train")) -> dict[str, tuple[int, int, list[str]]]:
    """`torch._dynamo.explain` of the compiled spec in each mode: {mode: (graphs, breaks, break reasons)}.

    On the `meta` device (the default) nothing is allocated or computed: dynamo traces with fake
    tensors either way, so where the graphs break does not depend on the device."""
    import torch._dynamo

    if size and not isinstance(spec, Spec):
        overrides = ([*overrides, f"input.size={size}"] if isinstance(overrides, list)
                     else {**(overrides or {}), "input.size": size})
    elif size:
        raise ValueError("size applies to a spec file; pass its path")
    spec = as_spec(spec, overrides)
    from ..backend.compiler import compile_spec

    model = compile_spec(spec, device)
    x = torch.randn(batch, *spec.input.shape, device=device)
    out: dict[str, tuple[int, int, list[str]]] = {}
    for mode in modes:
        model.train(mode == "train")
        with torch.no_grad() if mode == "eval" else contextlib.nullcontext():
            e = torch._dynamo.explain(model)(x)
        out[mode] = (e.graph_count, e.graph_break_count, [str(getattr(b, "reason", b)) for b in e.break_reasons])
    return out

