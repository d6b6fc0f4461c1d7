# The two set-up commands of the README: `make run` and `make test`. Each installs what it needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-parity run test test-slow lint bench world audit train-default train-predictor

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

# The parity extra (CPU torch + mattergen --no-deps); see scripts/install_parity.sh.
$(VENV)/.parity-installed: $(BIN)/python scripts/install_parity.sh
	bash scripts/install_parity.sh $(VENV)
	touch $@

install-parity: install $(VENV)/.parity-installed

run: install
	$(BIN)/python -m experiments.tcm_screen --out runs/tcm_screen --resume

test: install-parity
	$(BIN)/python -m pytest -q -n 2 --dist loadfile  # two workers: much of a test is single-threaded compilation

test-slow: install-parity
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check jaxdos experiments tests && $(BIN)/ruff format --check jaxdos experiments tests

bench: install
	$(BIN)/python -m experiments.bench_kernels --quick

world: install
	$(BIN)/python -m experiments.make_world --n 20000 --out data/world-v1

audit: install
	$(BIN)/python -m experiments.audit_dos

# Retrain the embedded default models (jaxdos/assets/) on the committed world subset.
# The recipe of the shipped models (DOSSampler about 35 + 50 minutes on a 2-core CPU; CDOSGen took
# 75 + 60 before its train step got 2.7x faster: its 20 250 steps now take about 50 at 7.6 steps/s,
# not rerun end to end). DOSSampler:
# 3 000 steps at a constant lr, then 5 400 more from it with the lr cosine-decayed. CDOSGen:
# pre-training and a first fine-tuning (--make-default), two full fine-tuning rounds at a constant
# lr, and a 14 000-step round with the lr cosine-decayed from 1e-3 to 1e-4.
train-default: install
	$(BIN)/python -m experiments.train_sampler --preset tiny --steps 3000 --regressor-steps 300 --workdir runs/sampler_tiny
	$(BIN)/python -m experiments.train_sampler --init runs/sampler_tiny/sampler --steps 5400 --cosine --eval-every 300 --ckpt-every 300 --workdir runs/sampler_more --export jaxdos/assets/sampler_tiny
	$(BIN)/python -m experiments.train_crystal --make-default --steps 500 --finetune-steps 250
	$(BIN)/python -m experiments.train_crystal --stage finetune --init jaxdos/assets/crystal_tiny --steps 2500 --workdir runs/crystal_ft2
	$(BIN)/python -m experiments.train_crystal --stage finetune --init runs/crystal_ft2/model --steps 3000 --workdir runs/crystal_ft3
	$(BIN)/python -m experiments.train_crystal --stage finetune --init runs/crystal_ft3/model --steps 14000 --cosine --workdir runs/crystal_ft4
	cp runs/crystal_ft4/model/* jaxdos/assets/crystal_tiny/

# Train the embedded default DOS predictor (jaxdos/assets/predictor_default) on the committed world
# subset, then evaluate it against the oracle and a composition baseline (Table 7): 8 minutes for
# the 1500 equivariant steps and 2 for the evaluation on this 2-core CPU, quiet (docs/results.md).
train-predictor: install
	$(BIN)/python -m experiments.train_predictor --out runs/predictor --steps 1500 --export jaxdos/assets/predictor_default
	$(BIN)/python -m experiments.eval_predictor --model jaxdos/assets/predictor_default --out runs/eval_predictor --baseline-steps 1500
