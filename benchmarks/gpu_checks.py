"""The Python checks of benchmarks/gpu_check.sh, each writing PASS/FAIL/SKIP lines to a checks file.

    python benchmarks/gpu_checks.py specs   CHECKS [--device cuda] [--only NAME ...]
    python benchmarks/gpu_checks.py compile CHECKS [--device cuda]
    python benchmarks/gpu_checks.py deploy  CHECKS [--device cuda]

`specs`: every bundled spec (or those named): fp32 forward + backward in training mode (auxiliary heads
included), then eval-mode channels_last, bf16 and fp16 autocast against contiguous fp32.
`compile`: torch.compile(fullgraph=True) (inductor) of ResNet-50 and MobileNet-V2 against eager, fp32.
`deploy`: their deploy forms (archspec/backend/deploy.py) against the training forms: fp32 eager, bf16 compiled.
Tolerances (relative L2 error of the logits, fp32 references with TF32 off): see gpu_check.sh.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import archspec  # noqa: E402
from archspec.tools.bench import device_name, prepare_model, resolve_device, synchronize  # noqa: E402
from archspec.tools.train import loss_of  # noqa: E402


class Checks:
    """PASS / FAIL / SKIP lines, printed and appended to the checks file as they come."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def report(self, status: str, what: str) -> None:
        self.counts[status] += 1
        print(f"{status} {what}", flush=True)
        self.log.write(f"{status} {what}\n")
        self.log.flush()

    def check(self, ok: bool, what: str) -> None:
        self.report("PASS" if ok else "FAIL", what)

    def total(self, label: str) -> None:
        print(f"{label}: {self.counts}", flush=True)
        self.log.write(f"{label}: {self.counts}\n")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def activation_range(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    """Smallest and largest max-abs over every module's output (fp32, eval)."""
    seen: list[float] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.detach().abs().max().item())
                                     if isinstance(o, torch.Tensor) and o.is_floating_point() else None)
             for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return min(seen), max(seen)


def check_spec(path: Path, dev: torch.device, checks: Checks) -> None:
    name = path.stem
    spec = archspec.load(path)
    torch.manual_seed(0)
    model = archspec.build(spec, device=dev)
    x = torch.randn(2, *spec.input.shape, device=dev)
    model.train()
    outs = model(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss, _ = loss_of(outs, torch.zeros(2, dtype=torch.long, device=dev))  # + 0.3 x each aux head's
    loss.backward()
    grads = all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    ok = bool(torch.isfinite(loss)) and grads and len(outs) == 1 + len(spec.aux_heads)
    checks.check(ok, f"{name}: fp32 forward+backward, training mode, {len(outs)} output(s), finite loss and gradients: {ok}")
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        ref = model(x)
    lo, hi = activation_range(model, x)
    model = prepare_model(model, channels_last=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y_cl = model(x_cl)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            y_bf16 = model(x_cl)
        with torch.autocast(dev.type, dtype=torch.float16):
            y_fp16 = model(x_cl)
    e = rel(y_cl, ref)
    checks.check(e <= 1e-3, f"{name}: channels_last vs contiguous fp32: rel {e:.1e} (<= 1e-3)")
    e = rel(y_bf16, ref)
    checks.check(y_bf16.dtype == torch.bfloat16 and e <= 5e-2, f"{name}: bf16 autocast (channels_last) vs fp32: rel {e:.1e} (<= 5e-2)")
    e = rel(y_fp16, ref)
    if lo < 1e-3 or hi > 3e4:
        checks.report("SKIP", f"{name}: fp16 autocast: fp32 activations span {lo:.0e}..{hi:.0e} at random init, outside "
                              f"fp16's range; rel {e:.1e}, finite {bool(torch.isfinite(y_fp16).all())}")
    else:
        checks.check(y_fp16.dtype == torch.float16 and e <= 1e-2, f"{name}: fp16 autocast (channels_last) vs fp32: rel {e:.1e} (<= 1e-2)")


def check_compile(name: str, dev: torch.device, checks: Checks) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = archspec.build(ROOT / "specs" / f"{name}.yaml", device=dev).eval()
    x = torch.randn(8, 3, 224, 224, device=dev)
    start = time.perf_counter()
    compiled = prepare_model(model, compile=True, fullgraph=True)
    with torch.no_grad():
        y = compiled(x)
        synchronize(dev)
        took = time.perf_counter() - start
        ref = model(x)
    e = rel(y, ref)
    checks.check(e <= 1e-3, f"{name}: torch.compile(fullgraph=True, inductor) vs eager, fp32: rel {e:.1e} (<= 1e-3); "
                            f"compiled in {took:.0f} s")


def check_deploy(name: str, dev: torch.device, checks: Checks) -> None:
    """The deploy form against the training form (eval, fp32, batch norms randomised): fp32 eager to 1e-5,
    bf16 compiled (freezing, CUDA graphs) within bf16's tolerance."""
    from archspec.backend.deploy import deploy
    from archspec.backend.references import randomise_norms

    torch._dynamo.reset()
    spec = archspec.load(ROOT / "specs" / f"{name}.yaml")
    x = torch.randn(8, *spec.input.shape, device=dev)
    outputs = {}
    for dtype, compile in ((torch.float32, False), (torch.bfloat16, True)):
        torch.manual_seed(0)
        model = archspec.build(spec, device=dev).eval()
        state = model.state_dict()
        state.update(randomise_norms(state))
        model.load_state_dict(state)
        with torch.no_grad():
            ref = model(x)
        outputs[dtype] = deploy(model, dtype, compile=compile)(x), ref
    e = rel(*outputs[torch.float32])
    checks.check(e <= 1e-5, f"{name}: deploy form (folded, channels_last) vs training form, fp32: rel {e:.1e} (<= 1e-5)")
    e = rel(*outputs[torch.bfloat16])
    checks.check(e <= 5e-2, f"{name}: deploy form bf16, compiled (freezing, CUDA graphs) vs fp32: rel {e:.1e} (<= 5e-2)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("specs", "compile", "deploy"))
    p.add_argument("checks", type=Path, help="the checks file (appended to)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", nargs="*", default=[], help="spec names (default: every bundled spec)")
    args = p.parse_args(argv)
    torch.backends.cudnn.allow_tf32 = False  # true fp32 references
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = resolve_device(args.device)
    print(f"torch {torch.__version__} on {device_name(dev)}", flush=True)
    with args.checks.open("a") as log:
        checks = Checks(log)
        if args.what == "specs":
            jobs = [(path.stem, lambda path=path: check_spec(path, dev, checks))
                    for path in sorted((ROOT / "specs").glob("*.yaml")) if not args.only or path.stem in args.only]
        else:
            check = check_compile if args.what == "compile" else check_deploy
            jobs = [(name, lambda name=name: check(name, dev, checks)) for name in ("resnet50", "mobilenet_v2")]
        for name, job in jobs:
            start = time.perf_counter()
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - one line per failure, then the next check
                checks.report("FAIL", f"{name}: {args.what}: {type(exc).__name__}: {str(exc)[:300]}")
                traceback.print_exc()
            print(f"    ({time.perf_counter() - start:.1f} s)", flush=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        checks.total(f"{args.what} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
