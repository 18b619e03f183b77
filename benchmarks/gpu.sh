#!/usr/bin/env bash
# The benchmarks at GPU sizes, for a machine with a CUDA device. Nothing else depends on it;
# it has not been run for docs/benchmarks.md (no GPU where that page was made).
#
#   bash benchmarks/gpu.sh [OUT]        (OUT defaults to runs/bench-gpu)
#
# Writes OUT/results/*.json, OUT/img/*.png and OUT/benchmarks.md (the same page as
# scripts/bench.sh, from these results). Sizes: training throughput of tiny at batch 1024 and
# ViT-B-32 at batch 256 under bf16 autocast (weights and optimizer state fp32), ours against
# OpenCLIP; the loss from B = 1024 to 65536 for every token count, and the optimizer step up
# to 4M rows (ours through its Triton kernel, next to torch's fused CUDA Adam, geoopt and a
# tensor copy: the bandwidth floor). bench_losses.py and bench_radam.py run on the GPU only
# once they accept --device (checked through their --help); until then they are skipped here.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/peers_env.sh
PY="$PEERS_PY"
OUT="${1:-runs/bench-gpu}"
RES="$OUT/results"
IMG="$OUT/img"
mkdir -p "$RES" "$IMG"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to do')"
THREADS="$(env -u OMP_NUM_THREADS nproc)"  # nproc obeys OMP_NUM_THREADS
"$PY" benchmarks/report.py machine --out "$RES/machine.json" --threads "$THREADS" \
  --command "bash benchmarks/gpu.sh $OUT" --mode "gpu: $("$PY" -c 'import torch; print(torch.cuda.get_device_name())')"
: > "$RES/durations.tsv"

step() {  # step NAME COMMAND...: run, time it, append to durations.tsv
  local name="$1" start=$SECONDS
  shift
  echo "== $name" >&2
  "$@"
  printf '%s\t%s\n' "$name" "$((SECONDS - start))" >> "$RES/durations.tsv"
}

if "$PY" benchmarks/bench_radam.py --help | grep -q -- "--device"; then
  step radam "$PY" benchmarks/bench_radam.py --device cuda --rows 4194304 --threads "$THREADS" \
    --json "$RES/radam.json"
fi
if "$PY" benchmarks/bench_losses.py --help | grep -q -- "--device"; then
  step losses "$PY" benchmarks/bench_losses.py --device cuda --batches 1024 4096 16384 65536 \
    --out "$OUT/losses"
  cp "$OUT/losses/results.json" "$RES/losses.json"
  cp "$OUT/losses/bench_losses.png" "$IMG/bench_suite_losses.png" 2>/dev/null || true
fi
step throughput "$PY" benchmarks/bench_throughput.py --device cuda --precision bf16 \
  --batch tiny=1024 ViT-B-32=256 --steps 10 --warmup 3 \
  --json "$RES/throughput.json" --plot "$IMG/bench_throughput.png"
step scaling "$PY" benchmarks/bench_scaling.py --device cuda \
  --batches 1024 2048 4096 8192 16384 32768 65536 --grid-max 65536 \
  --rows 16384 65536 262144 1048576 4194304 --steps 20 \
  --json "$RES/scaling.json" --plots "$IMG"
"$PY" benchmarks/report.py page --results "$RES" --out "$OUT/benchmarks.md"
