#!/usr/bin/env bash
# Issue 7's GPU checks, in one run (in this order, most important first):
#   1. every bundled spec on CUDA: fp32 forward + backward in training mode (auxiliary heads included);
#      channels_last, bf16 autocast and fp16 autocast forward passes against fp32 (tolerances below);
#   2. DDP smoke runs: torchrun, nccl, 1 GPU, tests/ddp_worker.py, eager and under torch.compile
#      (aot_eager: dynamo's DDP graph splitting; identical weights across ranks, weights changed);
#   3. the bench command on cuda (python -m archspec.perf_cli bench ... --reference; peak memory);
#   4. benchmarks/throughput.py --device cuda (bf16, channels_last, batch 256): eager, then compiled
#      (ours under fullgraph=True), ResNet-50 first, while the time budget lasts (the rest is listed as
#      skipped in the results file);
#   5. with the time left: torch.compile(fullgraph=True) (inductor) of ResNet-50 and MobileNet-V2
#      against eager, fp32.
#
# How to run it, from the repository root on the development machine (the device image has torch,
# torchvision, timm, rich, scikit-learn and pyyaml, but not pydantic; the wheels travel in .whl):
#   once:  echo /.whl/ >> .git/info/exclude
#          python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#            -d .whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#            typing_extensions==4.16.0 PyYAML==6.0.4
#   then:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Expected runtime: 9 to 9.5 minutes; it budgets itself to end by 560 s (GPU_CHECK_DEADLINE): setup
# ~15 s, step 1 ~1-2 min (at most 150 s), step 2 ~30 s, step 3 ~30 s, step 4 until ~410 s (eager ~1.5
# min, then compiled measurements while they fit; each is written to the file as soon as it is done),
# step 5 in what is left (skipped under 60 s). Nothing is left running.
# Output (into $OUT where set, else benchmarks/results/gpu/; 7 files, $OUT returns at most 8):
#   gpu_check.log (everything), checks.txt (one PASS/FAIL/SKIP line per check), nvidia_smi.txt,
#   ddp_nccl.json, ddp_nccl_compiled.json, bench_cli.txt, throughput_cuda_<card>.txt (the card named in
#   the file name and inside; also copied to benchmarks/results/).
# Tolerances (relative L2 error of the logits against fp32 with TF32 off; see tests/test_torch_compile.py):
#   channels_last 1e-3 (cuDNN may pick other algorithms); bf16 5e-2 (8-bit mantissa; the CPU measures
#   <= 2.5e-2 on every spec); fp16 1e-2 (11-bit mantissa; the CPU measures <= 1.1e-3), judged only where
#   the fp32 activations of the randomly initialised net stay inside fp16's range (else SKIP, naming the
#   range: at random init EfficientNet's activations fall to 1e-14 and ResNet-152's grow past 1e7, as
#   torchvision's do); compiled vs eager 1e-3.
set -uo pipefail
START=$SECONDS
DEADLINE=${GPU_CHECK_DEADLINE:-560}
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=${OUT:-$ROOT/benchmarks/results/gpu}
mkdir -p "$DEST"
exec > >(tee "$DEST/gpu_check.log") 2>&1
left() { echo $((DEADLINE - (SECONDS - START))); }
step() { echo; echo "=== [$((SECONDS - START)) s] $*"; }

step "setup"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$ROOT
else
  export PYTHONPATH=$ROOT
fi
export PYTHONUNBUFFERED=1
nvidia-smi > "$DEST/nvidia_smi.txt" 2>&1
python3 -c "import torch, torchvision, archspec; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" || { echo "imports failed"; exit 1; }

step "1. every spec on CUDA: fp32 forward/backward, channels_last, bf16 and fp16 autocast"
timeout 150 python3 - "$DEST/checks.txt" <<'PY'
import sys, time, traceback
from pathlib import Path
import torch
import archspec
from archspec.bench import example_input, prepare_model

torch.backends.cudnn.allow_tf32 = False  # true fp32 references
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
log = open(sys.argv[1], "w")
counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

def report(status, what):
    counts[status] += 1
    print(f"{status} {what}", flush=True)
    log.write(f"{status} {what}\n")
    log.flush()

def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()

def activation_range(model, x):
    """Smallest and largest max-abs over every module's output (fp32, eval)."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.detach().abs().max().item())
                                     if isinstance(o, torch.Tensor) and o.is_floating_point() else None)
             for m in model.modules()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return min(seen), max(seen)

print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
for path in sorted(Path("specs").glob("*.yaml")):
    name = path.stem
    try:
        start = time.perf_counter()
        spec = archspec.load(path)
        torch.manual_seed(0)
        model = archspec.build(spec, device=dev)
        x = torch.randn(2, *spec.input.shape, device=dev)
        model.train()
        out = model(x)
        outs = out if isinstance(out, tuple) else (out,)
        target = torch.zeros(2, dtype=torch.long, device=dev)
        loss = sum(torch.nn.functional.cross_entropy(o, target) for o in outs)
        loss.backward()
        grads = all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        ok = bool(torch.isfinite(loss)) and grads and len(outs) == 1 + len(spec.aux_heads)
        report("PASS" if ok else "FAIL", f"{name}: fp32 forward+backward, training mode, {len(outs)} output(s), "
                                         f"finite loss and gradients: {ok}")
        model.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            ref = model(x)
        lo, hi = activation_range(model, x)
        model = prepare_model(model, channels_last=True)
        x_cl = example_input(spec.input.shape, 2, dev, channels_last=True)
        x_cl.copy_(x)
        with torch.no_grad():
            y_cl = model(x_cl)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y_bf16 = model(x_cl)
            with torch.autocast("cuda", dtype=torch.float16):
                y_fp16 = model(x_cl)
        e = rel(y_cl, ref)
        report("PASS" if e <= 1e-3 else "FAIL", f"{name}: channels_last vs contiguous fp32: rel {e:.1e} (<= 1e-3)")
        e = rel(y_bf16, ref)
        ok = y_bf16.dtype == torch.bfloat16 and e <= 5e-2
        report("PASS" if ok else "FAIL", f"{name}: bf16 autocast (channels_last) vs fp32: rel {e:.1e} (<= 5e-2)")
        e = rel(y_fp16, ref)
        if lo < 1e-3 or hi > 3e4:
            report("SKIP", f"{name}: fp16 autocast: fp32 activations span {lo:.0e}..{hi:.0e} at random init, outside "
                           f"fp16's range; rel {e:.1e}, finite {bool(torch.isfinite(y_fp16).all())}")
        else:
            ok = y_fp16.dtype == torch.float16 and e <= 1e-2
            report("PASS" if ok else "FAIL", f"{name}: fp16 autocast (channels_last) vs fp32: rel {e:.1e} (<= 1e-2)")
        print(f"    ({time.perf_counter() - start:.1f} s)", flush=True)
        del model, out, outs, loss
        torch.cuda.empty_cache()
    except Exception as exc:
        report("FAIL", f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
        traceback.print_exc()

print(f"checks: {counts}")
log.write(f"checks: {counts}\n")
PY
echo "step 1 exit code $?"

step "2. DDP smoke runs: torchrun, nccl, 1 GPU (eager, then torch.compile aot_eager)"
TORCHRUN=$(dirname "$(command -v python3)")/torchrun
[ -x "$TORCHRUN" ] || TORCHRUN="python3 -m torch.distributed.run"
timeout 90 $TORCHRUN --standalone --nproc_per_node 1 tests/ddp_worker.py --backend nccl --device cuda \
  --steps 5 --batch 32 --out "$DEST/ddp_nccl.json"
echo "DDP (eager) exit code $?"
timeout 90 $TORCHRUN --standalone --nproc_per_node 1 tests/ddp_worker.py --backend nccl --device cuda \
  --steps 5 --batch 32 --compile aot_eager --out "$DEST/ddp_nccl_compiled.json"
echo "DDP (compiled) exit code $?"

step "3. bench command on cuda"
timeout 90 python3 -m archspec.perf_cli bench specs/resnet50.yaml --device cuda --batch 256 --amp bf16 \
  --channels-last --reference --iters 20 | tee "$DEST/bench_cli.txt"
echo "bench exit code $?"

step "4. throughput.py on cuda (bf16, channels_last, batch 256)"
BUDGET=$(( $(left) - 150 ))
timeout $(( $(left) - 10 )) python3 benchmarks/throughput.py --device cuda --time-budget $BUDGET --out-dir "$DEST"
echo "throughput exit code $?"
cp "$DEST"/throughput_cuda_*.txt "$ROOT/benchmarks/results/" 2>/dev/null

step "5. torch.compile(fullgraph=True) vs eager on CUDA (with the time left)"
if [ "$(left)" -gt 60 ]; then
timeout $(( $(left) - 5 )) python3 - "$DEST/checks.txt" <<'PY'
import sys, time, traceback
from pathlib import Path
import torch
import archspec
from archspec.bench import prepare_model

torch.backends.cudnn.allow_tf32 = False  # true fp32 references
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
log = open(sys.argv[1], "a")
counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

def report(status, what):
    counts[status] += 1
    print(f"{status} {what}", flush=True)
    log.write(f"{status} {what}\n")
    log.flush()

def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()

for name in ("resnet50", "mobilenet_v2"):
    try:
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = archspec.build(f"specs/{name}.yaml", device=dev).eval()
        x = torch.randn(8, 3, 224, 224, device=dev)
        start = time.perf_counter()
        compiled = prepare_model(model, compile=True, fullgraph=True)
        with torch.no_grad():
            y = compiled(x)
            torch.cuda.synchronize()
            took = time.perf_counter() - start
            ref = model(x)
        e = rel(y, ref)
        report("PASS" if e <= 1e-3 else "FAIL", f"{name}: torch.compile(fullgraph=True, inductor) vs eager, fp32: "
                                                 f"rel {e:.1e} (<= 1e-3); compiled in {took:.0f} s")
    except Exception as exc:
        report("FAIL", f"{name}: torch.compile(fullgraph=True): {type(exc).__name__}: {str(exc)[:300]}")
        traceback.print_exc()
print(f"compile checks: {counts}")
log.write(f"compile checks: {counts}\n")
PY
echo "step 5 exit code $?"
else
  echo "SKIP compile checks: $(left) s left" | tee -a "$DEST/checks.txt"
fi

step "done"
grep -c '^PASS' "$DEST/checks.txt" | sed 's/^/PASS: /'
grep -E '^(FAIL|SKIP)' "$DEST/checks.txt"
cat "$DEST"/ddp_nccl*.json 2>/dev/null
cat "$DEST"/throughput_cuda_*.txt 2>/dev/null
