#!/usr/bin/env bash
# Issue 7's GPU checks, in one run (in this order, most important first):
#   1. every bundled spec on CUDA: fp32 forward + backward in training mode (auxiliary heads included);
#      channels_last, bf16 autocast and fp16 autocast forward passes against fp32 (tolerances below;
#      benchmarks/gpu_checks.py, which tests/test_torch_compile.py also runs on the CPU);
#   2. DDP smoke runs: torchrun, nccl, 1 GPU, tests/ddp_worker.py, eager and under torch.compile
#      (aot_eager: dynamo's DDP graph splitting; identical weights across ranks, weights changed);
#      then FSDP2 (fully_shard) eager;
#   3. the bench command on cuda (python3 cli.py bench ... --reference; peak memory);
#   4. benchmarks/throughput.py --device cuda (bf16, channels_last, batch 256): eager, then compiled
#      (ours under fullgraph=True), ResNet-50 first, while the time budget lasts (the rest is listed as
#      skipped in the results file);
#   5. with the time left: torch.compile(fullgraph=True) (inductor) of ResNet-50 and MobileNet-V2
#      against eager, fp32 (benchmarks/gpu_checks.py compile).
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
# step 5 in what is left (skipped under 60 s). Nothing is left running. On 2026-11-28's H200 run (results in
# benchmarks/results/gpu/) step 4 measured 12 of its 16 rows by 538 s; the rest took a second call on the
# warm machine: `throughput.py --device cuda --models mobilenet_v2,vgg16 --modes compiled` (164 s), then
# `gpu_checks.py compile OUT/checks_compile.txt --device cuda` (41 s). 15 device minutes hold both calls.
# Output (into $OUT where set, else benchmarks/results/gpu/; 8 files, $OUT returns at most 8):
#   gpu_check.log (everything), checks.txt (one PASS/FAIL/SKIP line per check), nvidia_smi.txt,
#   ddp_nccl.json, ddp_nccl_compiled.json, fsdp_nccl.json, bench_cli.txt, throughput_cuda_<card>.txt
#   (the card named in the file name and inside; also copied to benchmarks/results/).
# Dry run on a machine without a GPU (checks the script itself: about 2 minutes on 2 cores; its numbers
# mean nothing):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SPECS="resnet18 mobilenet_v2 googlenet" OUT=/tmp/gpu_dry bash benchmarks/gpu_check.sh
#   (gloo instead of nccl, batch 2, throughput.py on ResNet-50 only with one timed round).
# Tolerances (relative L2 error of the logits against fp32 with TF32 off; see tests/test_torch_compile.py):
#   channels_last 1e-3 (cuDNN may pick other algorithms); bf16 5e-2 (8-bit mantissa; the CPU measures
#   <= 2.5e-2 on every spec); fp16 1e-2 (11-bit mantissa; the CPU measures <= 1.1e-3), judged only where
#   the fp32 activations of the randomly initialised net stay inside fp16's range (else SKIP, naming the
#   range: at random init EfficientNet's activations fall to 1e-14 and ResNet-152's grow past 1e7, as
#   torchvision's do); compiled vs eager 1e-3.
# `bash benchmarks/gpu_check.sh deploy` runs only issue 22's deploy checks (about 7 minutes; GPU_CHECK_DEADLINE
# defaults to 420 s there: run(command="bash benchmarks/gpu_check.sh deploy", carry=[".whl"], timeout_s=500)):
# setup; D1. gpu_checks.py deploy (ResNet-50, MobileNet-V2: the deploy form against
# the training form, fp32 eager to 1e-5 and bf16 compiled with freezing and CUDA graphs); D2. benchmarks/deploy.py
# --device cuda (bf16 weights, batch 256, against torchvision compiled with bf16 autocast and channels_last;
# ResNet-50 first, the others while the budget lasts, each about a minute and a half); D3. only with
# GPU_CHECK_AUTOTUNE=1 and 150 s left: ResNet-50 again with max-autotune (its autotuning takes minutes).
# Output: gpu_check.log, checks.txt, nvidia_smi.txt, deploy_cuda_<card>.txt, deploy_cuda_<card>_autotune.txt
# (both also copied to benchmarks/results/). Dry run: GPU_CHECK_DEVICE=cpu OUT=/tmp/gpu_dry bash benchmarks/gpu_check.sh deploy
set -uo pipefail
MODE=${1:-all}
[ "$MODE" = deploy ] && : "${GPU_CHECK_DEADLINE:=420}"
START=$SECONDS
DEADLINE=${GPU_CHECK_DEADLINE:-560}
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=${OUT:-$ROOT/benchmarks/results/gpu}
DEV=${GPU_CHECK_DEVICE:-cuda}
GPU_CHECK_SPECS=${GPU_CHECK_SPECS:-}
if [ "$DEV" = cuda ]; then
  BACKEND=nccl; DDP_BATCH=32; BENCH_ARGS="--batch 256 --iters 20"; THROUGHPUT_ARGS=""
else  # a dry run of the script itself
  BACKEND=gloo; DDP_BATCH=2; BENCH_ARGS="--batch 2 --iters 2 --warmup 1"
  THROUGHPUT_ARGS="--models resnet50 --batch 2 --iters 1 --warmup 1 --amp bf16 --channels-last"
fi
mkdir -p "$DEST"
exec > >(tee "$DEST/gpu_check.log") 2>&1
left() { echo $((DEADLINE - (SECONDS - START))); }
step() { echo; echo "=== [$((SECONDS - START)) s] $*"; }

step "setup"
if ! python3 -c "import pydantic, yaml" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$ROOT
else
  export PYTHONPATH=$ROOT
fi
export PYTHONUNBUFFERED=1
nvidia-smi > "$DEST/nvidia_smi.txt" 2>&1
python3 -c "import torch, torchvision, archspec; from archspec.tools.bench import device_name; \
print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, device_name('$DEV'))" \
  || { echo "imports failed"; exit 1; }

if [ "$MODE" = deploy ]; then
  if [ "$DEV" = cuda ]; then DEPLOY_ARGS=""; else DEPLOY_ARGS="--batch 2 --iters 2 --warmup 1 --models resnet18"; fi
  : > "$DEST/checks.txt"
  step "D1. the deploy form against the training form on $DEV"
  timeout 150 python3 benchmarks/gpu_checks.py deploy "$DEST/checks.txt" --device $DEV
  echo "D1 exit code $?"
  step "D2. benchmarks/deploy.py on $DEV (ours: deploy form; torchvision: compiled, at its best)"
  TAG=$(python3 -c "import torch; print('cuda_' + '_'.join(torch.cuda.get_device_name().lower().split()) if torch.cuda.is_available() else 'cpu')")
  timeout $(( $(left) - 10 )) python3 benchmarks/deploy.py --device $DEV --time-budget $(( $(left) - 100 )) \
    --out "$DEST/deploy_$TAG.txt" $DEPLOY_ARGS
  echo "D2 exit code $?"
  step "D3. ResNet-50's deploy form with max-autotune (with 150 s left)"
  if [ "${GPU_CHECK_AUTOTUNE:-0}" = 1 ] && [ "$(left)" -gt 150 ]; then
    timeout $(( $(left) - 5 )) python3 benchmarks/deploy.py --device $DEV --models resnet50 --autotune \
      --out "$DEST/deploy_${TAG}_autotune.txt" $DEPLOY_ARGS
    echo "D3 exit code $?"
  else
    echo "SKIP max-autotune: GPU_CHECK_AUTOTUNE=${GPU_CHECK_AUTOTUNE:-0}, $(left) s left"
  fi
  [ "$DEV" = cuda ] && cp "$DEST"/deploy_cuda_*.txt "$ROOT/benchmarks/results/" 2>/dev/null
  step "done"; cat "$DEST/checks.txt" "$DEST"/deploy_*.txt 2>/dev/null
  exit 0
fi

step "1. every spec on $DEV: fp32 forward/backward, channels_last, bf16 and fp16 autocast"
: > "$DEST/checks.txt"
timeout 150 python3 benchmarks/gpu_checks.py specs "$DEST/checks.txt" --device $DEV --only $GPU_CHECK_SPECS
echo "step 1 exit code $?"

step "2. DDP smoke runs: torchrun, $BACKEND, 1 process (eager, then torch.compile aot_eager)"
TORCHRUN=$(dirname "$(command -v python3)")/torchrun
[ -x "$TORCHRUN" ] || TORCHRUN="python3 -m torch.distributed.run"
timeout 90 $TORCHRUN --standalone --nproc_per_node 1 tests/ddp_worker.py --backend $BACKEND --device $DEV \
  --steps 5 --batch $DDP_BATCH --out "$DEST/ddp_$BACKEND.json"
echo "DDP (eager) exit code $?"
timeout 90 $TORCHRUN --standalone --nproc_per_node 1 tests/ddp_worker.py --backend $BACKEND --device $DEV \
  --steps 5 --batch $DDP_BATCH --compile aot_eager --out "$DEST/ddp_${BACKEND}_compiled.json"
echo "DDP (compiled) exit code $?"
timeout 60 $TORCHRUN --standalone --nproc_per_node 1 tests/ddp_worker.py --backend $BACKEND --device $DEV \
  --steps 5 --batch $DDP_BATCH --wrap fsdp --out "$DEST/fsdp_$BACKEND.json"
echo "FSDP2 exit code $?"

step "3. bench command on $DEV"
timeout 90 python3 cli.py bench specs/resnet50.yaml --device $DEV $BENCH_ARGS --amp bf16 \
  --channels-last --reference | tee "$DEST/bench_cli.txt"
echo "bench exit code ${PIPESTATUS[0]}"

step "4. throughput.py on $DEV (bf16, channels_last, batch 256 on cuda)"
BUDGET=$(( $(left) - 150 ))
timeout $(( $(left) - 10 )) python3 benchmarks/throughput.py --device $DEV --time-budget $BUDGET --out-dir "$DEST" $THROUGHPUT_ARGS
echo "throughput exit code $?"
[ "$DEV" = cuda ] && cp "$DEST"/throughput_cuda_*.txt "$ROOT/benchmarks/results/" 2>/dev/null

step "5. torch.compile(fullgraph=True) vs eager on $DEV (with the time left)"
if [ "$(left)" -gt 60 ]; then
timeout $(( $(left) - 5 )) python3 benchmarks/gpu_checks.py compile "$DEST/checks.txt" --device $DEV
echo "step 5 exit code $?"
else
  echo "SKIP compile checks: $(left) s left" | tee -a "$DEST/checks.txt"
fi

step "done"
grep -c '^PASS' "$DEST/checks.txt" | sed 's/^/PASS: /'
grep -E '^(FAIL|SKIP)' "$DEST/checks.txt"
cat "$DEST"/ddp_*.json "$DEST"/fsdp_*.json 2>/dev/null
cat "$DEST"/throughput_*.txt 2>/dev/null
