#!/usr/bin/env bash
# Install the `parity` extra (PyTorch reference stack) into an existing jaxdos venv.
#
# Usage:   scripts/install_parity.sh [VENV_DIR]          (default: .venv)
# Elsewhere (no local CPU wheel): take torch from the PyTorch CPU index instead of the CUDA build
#          TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/install_parity.sh
#
# What it installs, and why only this (see ../shared/spec/environment.md, "PyTorch reference stack"):
#   torch==2.13.0        CPU build (~190 MB wheel); the reference models run on CPU in float32.
#   omegaconf            imported by mattergen's denoiser/adapter modules.
#   torch_geometric      pure Python; GaussianSmearing, Data/Batch (ChemGraph is a PyG Data).
#   emmet-core           imported (for a type annotation) by mattergen.common.data.types.
#   mattergen==1.0.3     --no-deps: its metadata pins torch==2.2.1+cu118, numpy<2 and
#                        pytorch-lightning==2.0.6, which cannot resolve next to the JAX stack.
# Not installed: torch_scatter / torch_sparse (no wheels for current torch; building torch_scatter
# from source takes ~12 min on 2 cores). tests/parity/standins/ provides a tested pure-torch
# stand-in that tests/parity/conftest.py puts on sys.path for the parity tests only.
#
# The JAX stack is protected: every package below is pinned to the version already installed, so
# pip fails loudly instead of silently up/downgrading it.
set -euo pipefail

VENV="${1:-.venv}"
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
  echo "install_parity.sh: no python at $PY (run 'make install' first)" >&2
  exit 2
fi

PROTECTED='jax|jaxlib|flax|numpy|scipy|optax|orbax-checkpoint|pymatgen|pymatgen-core|grain|e3nn-jax|jraph|monty|sympy|networkx|matplotlib'
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$PY" -m pip freeze --exclude-editable | grep -iE "^(${PROTECTED})==" >"$constraints" || true
echo "install_parity.sh: pinning $(wc -l <"$constraints") installed JAX-stack packages"

start=$(date +%s)
torch_args=()
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
  torch_args=(--index-url "$TORCH_INDEX_URL")
fi
"$PY" -m pip install -q -c "$constraints" "${torch_args[@]}" "torch==2.13.0"
"$PY" -m pip install -q -c "$constraints" "omegaconf>=2.3" "torch_geometric>=2.5" "emmet-core>=0.84"
# pip reports the unmet pins of mattergen's metadata on every later install; that is expected.
"$PY" -m pip install -q --no-deps "mattergen==1.0.3" 2>&1 | { grep -vE "^mattergen 1.0.3 requires|dependency resolver does not|is ignored" || true; }

"$PY" - <<'PY'
import importlib.metadata as md
for name in ("torch", "mattergen", "torch_geometric", "omegaconf", "emmet-core", "jax", "numpy"):
    print(f"  {name}=={md.version(name)}")
PY
echo "install_parity.sh: done in $(( $(date +%s) - start )) s"
