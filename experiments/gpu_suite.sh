#!/usr/bin/env bash
# Every jaxdos benchmark and both parity suites, on one GPU machine without network access.
#
#   experiments/gpu_suite.sh [RESULTS_DIR]                     # GPU run (default results/gpu_suite_<date>)
#   WHEELS_DIR=/path/to/wheels experiments/gpu_suite.sh         # install into a fresh venv first
#   experiments/gpu_suite.sh --cpu-dry-run [RESULTS_DIR]        # same steps, --quick everywhere, CPU
#
# Everything lands in RESULTS_DIR: <step>.json (each benchmark's JSON), <step>.log (its stdout +
# stderr), env.txt (devices, versions), summary.tsv (step, exit code, seconds) and SUMMARY.txt (the
# summary lines of every benchmark). A failing or timed-out step is recorded and the suite goes on.
# Each step has its own `timeout`, capped by what is left of SUITE_BUDGET_S (540 s; 1800 s in the
# CPU dry run, whose --quick steps are slower on 2 shared cores than the GPU steps), so the
# whole suite ends well inside 10 minutes even when steps hang.
#
# Python. PYTHON=<interpreter> if given; else with WHEELS_DIR a fresh venv in $VENV_DIR (default
# /tmp/jaxdos-gpu-venv) filled with `pip install --no-index --find-links $WHEELS_DIR` only; else
# ./.venv/bin/python. The wheel set (download on a machine with network, same OS / Python 3.11):
#
#   mkdir wheels && cd wheels
#   pip download "jax[cuda13]==0.10.2" "flax==0.12.8" optax orbax-checkpoint e3nn-jax jraph \
#       pymatgen numpy scipy grain tqdm matplotlib pytest hypothesis setuptools wheel
#   pip download torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130   # CUDA torch
#   pip download omegaconf "torch_geometric>=2.5" "emmet-core>=0.84"
#   pip download --no-deps mattergen==1.0.3
#
# (`jax[cuda13]` pulls jax-cuda13-plugin / jax-cuda13-pjrt and the nvidia-* CUDA 13 wheels: cublas,
# cuda-runtime, cudnn, cufft, cusolver, cusparse, nccl, nvjitlink, cuda-nvcc, cuda-cupti. Use
# `jax[cuda12]` and the cu12x torch index for a CUDA 12 driver. torch_scatter / torch_sparse are not
# needed: tests/parity/standins stands in for them.)
#
# Precision. Parity steps (pytest tests/parity, bench_sampler_vs_torch, bench_crystal_vs_mattergen)
# run with JAX_DEFAULT_MATMUL_PRECISION=highest and NVIDIA_TF32_OVERRIDE=0 (JAX and torch would
# otherwise use TF32 on H100); the throughput benchmarks keep the defaults they document.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--cpu-dry-run" ]]; then
  DRY=1
  shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RESULTS="${1:-results/gpu_suite_$(date +%Y%m%d_%H%M%S)$([[ $DRY == 1 ]] && echo _cpu_dry_run)}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
BUDGET="${SUITE_BUDGET_S:-$([[ $DRY == 1 ]] && echo 1800 || echo 540)}"
SCALE="${TIMEOUT_SCALE:-1}"  # multiplies every step timeout (a loaded CPU for the dry run)
START=$(date +%s)
SUMMARY="$RESULTS/summary.tsv"
printf 'step\texit\tseconds\ttimeout_s\n' >"$SUMMARY"

log() { echo "[gpu_suite $(($(date +%s) - START))s] $*" | tee -a "$RESULTS/suite.log"; }

# --- Python -------------------------------------------------------------------------------------
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -n "${WHEELS_DIR:-}" ]]; then
  VENV_DIR="${VENV_DIR:-/tmp/jaxdos-gpu-venv}"
  log "installing from $WHEELS_DIR into $VENV_DIR (no network)"
  python3 -m venv "$VENV_DIR"
  PY="$VENV_DIR/bin/python"
  PIP=("$PY" -m pip install -q --no-index --find-links "$WHEELS_DIR")
  install_ok=1
  {
    "${PIP[@]}" setuptools wheel || install_ok=0
    "${PIP[@]}" --no-build-isolation -e ".[test]" || install_ok=0
    "${PIP[@]}" "jax[cuda13]" || "${PIP[@]}" "jax[cuda12]" || install_ok=0
    "${PIP[@]}" torch omegaconf torch_geometric emmet-core || install_ok=0
    "${PIP[@]}" --no-deps mattergen || install_ok=0
  } >"$RESULTS/install.log" 2>&1
  ((install_ok)) || log "install reported errors (see install.log); continuing with what is there"
else
  PY="$ROOT/.venv/bin/python"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
  echo "date: $(date -u)"
  echo "mode: $([[ $DRY == 1 ]] && echo cpu-dry-run || echo gpu)"
  echo "git: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) dirty paths"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import jax; print('jax', jax.__version__, jax.default_backend(), jax.devices())"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
  "$PY" -m pip freeze 2>/dev/null
} >"$RESULTS/env.txt" 2>&1
if [[ $DRY == 0 ]] && ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')"; then
  log "WARNING: JAX sees no GPU (see env.txt); the figures below are not GPU figures"
fi

# --- Steps --------------------------------------------------------------------------------------
# step NAME TIMEOUT_S [ENV=VALUE ...] -- ARGS... : run "$PY ARGS" with --out RESULTS/NAME.json.
step() {
  local name=$1 limit=$2
  shift 2
  local envs=()
  while [[ $1 != "--" ]]; do envs+=("$1"); shift; done
  shift
  limit=$((limit * SCALE))
  local left=$((BUDGET - ($(date +%s) - START)))
  if ((left < 10)); then
    log "$name: skipped, suite budget spent"
    printf '%s\tskipped\t0\t0\n' "$name" >>"$SUMMARY"
    return
  fi
  ((limit > left)) && limit=$left
  log "$name (timeout ${limit}s): $*"
  local t0=$(date +%s)
  env "${envs[@]}" timeout --kill-after=10 "$limit" "$PY" "$@" >"$RESULTS/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$limit" >>"$SUMMARY"
  log "$name: exit $rc in ${dt}s"
}

PARITY_ENV=(JAX_DEFAULT_MATMUL_PRECISION=highest NVIDIA_TF32_OVERRIDE=0)
Q=()
[[ $DRY == 1 ]] && Q=(--quick)
o() { echo "--out=$RESULTS/$1.json"; }
# lim GPU_S DRY_S: a step's timeout. Compiling the --quick configurations on 2 shared CPU cores
# takes longer than the GPU runs (bench_sampler, bench_crystal and bench_crystal_vs_mattergen ran
# out of their GPU-sized timeouts in the dry run of 2026-11-26, machine at load 5).
lim() { if [[ $DRY == 1 ]]; then echo "$2"; else echo "$1"; fi; }

if [[ $DRY == 1 ]]; then
  step bench_kernels 120 -- -m experiments.bench_kernels --quick "$(o bench_kernels)"
else
  step bench_kernels 40 -- -m experiments.bench_kernels --n 4194304 --chunk 262144 "$(o bench_kernels)"
fi
step bench_oracle "$(lim 40 120)" -- -m experiments.bench_oracle "${Q[@]}" "$(o bench_oracle)"
step bench_sampler "$(lim 60 240)" -- -m experiments.bench_sampler "${Q[@]}" "$(o bench_sampler)"
step bench_sampler_train "$(lim 30 120)" -- -m experiments.bench_sampler_train "${Q[@]}" \
  "$(o bench_sampler_train)"
step bench_sampler_vs_torch "$(lim 60 120)" "${PARITY_ENV[@]}" -- \
  -m experiments.bench_sampler_vs_torch "${Q[@]}" "$(o bench_sampler_vs_torch)"
if [[ $DRY == 1 ]]; then
  step bench_rejection 90 -- -m experiments.bench_rejection --quick "$(o bench_rejection)"
else
  step bench_rejection 45 -- -m experiments.bench_rejection --batch 1024 8192 --batches 4 \
    --steps 32 "$(o bench_rejection)"
fi
if [[ $DRY == 1 ]]; then
  step bench_crystal 240 -- -m experiments.bench_crystal --quick "$(o bench_crystal)"
else
  step bench_crystal 60 -- -m experiments.bench_crystal --sizes tiny mattergen_base \
    --batch 16 64 --steps 20 "$(o bench_crystal)"
fi
step bench_crystal_vs_mattergen "$(lim 60 180)" "${PARITY_ENV[@]}" -- \
  -m experiments.bench_crystal_vs_mattergen "${Q[@]}" "$(o bench_crystal_vs_mattergen)"
if [[ $DRY == 1 ]]; then
  step bench_scaling 150 -- -m experiments.bench_scaling --quick --devices 1 2 "$(o bench_scaling)"
else
  step bench_scaling 50 -- -m experiments.bench_scaling --devices 1 2 4 8 --per-device 1024 \
    --steps 32 --repeats 2 "$(o bench_scaling)"
fi
if [[ $DRY == 1 ]]; then
  step bench_end_to_end 120 -- -m experiments.bench_end_to_end --quick --skip-screen \
    "$(o bench_end_to_end)"
else
  # 65536 proposals (8 batches); the 1M figure is projected from this rate (fits the step budget).
  step bench_end_to_end 120 -- -m experiments.bench_end_to_end --n 65536 --batch 8192 \
    --skip-screen "$(o bench_end_to_end)"
fi
step parity_tests "$([[ $DRY == 1 ]] && echo 300 || echo 100)" "${PARITY_ENV[@]}" -- \
  -m pytest -q -p no:cacheprovider tests/parity --junitxml="$RESULTS/parity_tests.xml"

# --- Summary ------------------------------------------------------------------------------------
{
  echo "gpu_suite $([[ $DRY == 1 ]] && echo '(cpu dry run)') in $(($(date +%s) - START)) s; results in $RESULTS"
  column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
  for f in "$RESULTS"/*.log; do
    n=$(basename "$f" .log)
    [[ $n == suite || $n == install ]] && continue
    echo "--- $n"
    grep -vE "^\s*$|Warning|warn\(|^[[:space:]]+" "$f" | tail -n 6
  done
} >"$RESULTS/SUMMARY.txt"
cat "$RESULTS/SUMMARY.txt"
