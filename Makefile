# recsys: `make demo` and `make test` are all a new user needs (see README.md).
SHELL := /bin/bash
# A failing command fails its recipe even inside a pipe (`recsys-package ... | tee`).
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
DEMO_DIR ?= data/demo
DEMO_EPOCHS ?= 20
PYTEST_ARGS ?=
# Training settings for `make train` / `make sweep` (any recsys-train override).
DATA ?= $(DEMO_DIR)/processed
TRAIN_ARGS ?=
SWEEP_ARGS ?= model=mf,gmf,neumf
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
# OpenMP threads sleep instead of spinning at barriers: with a busy second core, spinning made
# torch's 2-thread evaluation and training 10-25x slower; on an idle machine it costs nothing.
export OMP_WAIT_POLICY ?= PASSIVE
# BentoML: no usage reporting from demos, tests and benchmarks.
export BENTOML_DO_NOT_TRACK ?= true
SERVE_PORT ?= 3000
# `make loop`: its own MLflow store and data under LOOP_DIR, so its versions are 1 and 2.
LOOP_DIR ?= data/loop
LOOP_EPOCHS ?= 10
LOOP_USERS ?= 5000
LOOP_ENV = MLFLOW_TRACKING_URI=sqlite:///$(abspath $(LOOP_DIR))/mlflow.db
# `make bench-peers`: one venv per peer (their pins clash with ours: RecBole needs numpy < 2).
PEER_VENVS := benchmarks/.work/venvs
PEERS_ARGS ?=

.PHONY: help setup demo test bench bench-peers bench-defaults bench-batch bench-serve-catalogue bench-feedback loop train sweep serve bento helm-lint lint clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: $(VENV)/.installed  ## create .venv and install recsys (CPU torch first); instant when up to date

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch first and pinned: a looser requirement lets pip fetch GBs of CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: setup  ## synthetic data -> preprocess -> train NeuMF (MLflow) -> evaluate -> package for serving
	$(BIN)/recsys-generate out=$(DEMO_DIR)/reviews.jsonl.gz
	$(BIN)/recsys-preprocess data.input=$(DEMO_DIR)/reviews.jsonl.gz data.processed_dir=$(DEMO_DIR)/processed
	@# 20 epochs keep the demo within minutes on 2 cores (the default allows up to 50).
	$(BIN)/recsys-train data.processed_dir=$(DEMO_DIR)/processed hydra.run.dir=$(DEMO_DIR)/train \
	  trainer.max_epochs=$(DEMO_EPOCHS) callbacks.rich_progress_bar=null trainer.enable_progress_bar=false
	$(BIN)/recsys-eval ckpt_path=$(DEMO_DIR)/train/checkpoints/best.ckpt \
	  data.processed_dir=$(DEMO_DIR)/processed eval.output_dir=$(DEMO_DIR)/eval
	$(BIN)/recsys-package ckpt_path=$(DEMO_DIR)/train/checkpoints/best.ckpt | tee $(DEMO_DIR)/package.log
	@$(BIN)/python -m recsys.demo_summary --run-dir $(DEMO_DIR)/train --eval-dir $(DEMO_DIR)/eval \
	  --processed-dir $(DEMO_DIR)/processed --bento-tag "$$(tail -n 1 $(DEMO_DIR)/package.log)"

loop: setup  ## the lifecycle on the demo data: train -> promote -> package @champion -> serve simulated users -> train on reviews + their clicks -> promote (gate)
	rm -rf $(LOOP_DIR) && mkdir -p $(LOOP_DIR)
	test -f $(DEMO_DIR)/reviews.jsonl.gz || $(BIN)/recsys-generate out=$(DEMO_DIR)/reviews.jsonl.gz
	$(BIN)/recsys-preprocess data.input=$(DEMO_DIR)/reviews.jsonl.gz data.processed_dir=$(LOOP_DIR)/processed-1
	$(LOOP_ENV) $(BIN)/recsys-train data.processed_dir=$(LOOP_DIR)/processed-1 hydra.run.dir=$(LOOP_DIR)/train-1 \
	  trainer.max_epochs=$(LOOP_EPOCHS) callbacks.rich_progress_bar=null trainer.enable_progress_bar=false
	@# No champion yet: version 1 becomes it.
	$(LOOP_ENV) $(BIN)/recsys-promote model_uri=models:/recsys/1
	$(LOOP_ENV) $(BIN)/recsys-package model_uri=models:/recsys@champion | tee $(LOOP_DIR)/package-1.log
	@# Simulated users ask the champion for recommendations; their clicks go to /feedback, stamped
	@# in the validation weeks so that the next test split is later, organic reviews only.
	$(BIN)/python -m recsys.lifecycle.simulate --model "$$(tail -n 1 $(LOOP_DIR)/package-1.log)" \
	  --feedback-dir $(LOOP_DIR)/feedback --users $(LOOP_USERS) --during-val-of $(LOOP_DIR)/processed-1 \
	  | tee $(LOOP_DIR)/simulation.json
	@# The same split boundaries as version 1's data: both models are then trained up to the same
	@# day and judged on the same, later weeks.
	$(BIN)/recsys-preprocess data.input=$(DEMO_DIR)/reviews.jsonl.gz data.feedback=$(LOOP_DIR)/feedback \
	  data.split_from=$(LOOP_DIR)/processed-1 data.processed_dir=$(LOOP_DIR)/processed-2
	$(LOOP_ENV) $(BIN)/recsys-train data.processed_dir=$(LOOP_DIR)/processed-2 hydra.run.dir=$(LOOP_DIR)/train-2 \
	  trainer.max_epochs=$(LOOP_EPOCHS) callbacks.rich_progress_bar=null trainer.enable_progress_bar=false
	@# Version 1 never saw the clicks, so it was trained on other data: name the split to judge on.
	@# Exit 3 (refused) is an outcome here, not a failure; the decision is tagged on version 2.
	$(LOOP_ENV) $(BIN)/recsys-promote model_uri=models:/recsys/2 data.processed_dir=$(LOOP_DIR)/processed-2 \
	  | tee $(LOOP_DIR)/promote-2.log; rc=$$?; test $$rc -eq 0 -o $$rc -eq 3
	$(LOOP_ENV) $(BIN)/recsys-package model_uri=models:/recsys@champion | tee $(LOOP_DIR)/package-2.log
	@echo "promotion of version 2: $$(tail -n 1 $(LOOP_DIR)/promote-2.log)"
	@echo "serve it:  RECSYS_MODEL=$$(tail -n 1 $(LOOP_DIR)/package-2.log) RECSYS_FEEDBACK_DIR=$(LOOP_DIR)/feedback bentoml serve"
	@echo "browse:    mlflow ui --backend-store-uri sqlite:///$(abspath $(LOOP_DIR))/mlflow.db"

test: setup  ## run the whole test suite (slow tests included)
	$(BIN)/pytest $(PYTEST_ARGS)

train: setup  ## train on DATA (default: the demo data) with TRAIN_ARGS overrides
	$(BIN)/recsys-train data.processed_dir=$(DATA) $(TRAIN_ARGS)

sweep: setup  ## Hydra multirun over SWEEP_ARGS (default: model=mf,gmf,neumf) on DATA
	$(BIN)/recsys-train -m data.processed_dir=$(DATA) $(SWEEP_ARGS) $(TRAIN_ARGS)

bench: setup  ## preprocessing, training, evaluation and serving speed -> benchmarks/results/
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/embedding_updates.py
	$(BIN)/python benchmarks/compile_step.py
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/serve_load.py

bench-peers: setup $(PEER_VENVS)/recbole/.installed $(PEER_VENVS)/implicit/.installed  ## recsys vs RecBole and implicit (PEERS_ARGS=--quick) -> benchmarks/results/peers.json
	$(BIN)/python benchmarks/peers.py $(PEERS_ARGS)

bench-defaults: setup  ## rerun the model-defaults study (hours) -> benchmarks/results/defaults_*.json, print its tables
	$(BIN)/python benchmarks/defaults_table.py --run

bench-batch: setup  ## recsys-recommend over 1M users x 100k items, MF and NeuMF (hours) -> benchmarks/results/batch_scoring.json
	$(BIN)/python benchmarks/batch_scoring.py

bench-serve-catalogue: setup  ## bentoml serve over 1M items: two-stage retrieval vs exact, recall@10 (builds take minutes) -> benchmarks/results/serve_catalogue.json
	$(BIN)/python benchmarks/serve_catalogue.py

bench-feedback: setup  ## POST /feedback under load from 16 clients, SIGTERM and restart mid-load: events/s, lost, duplicates -> benchmarks/results/feedback_load.json
	$(BIN)/python benchmarks/feedback_load.py

$(PEER_VENVS)/%/.installed: benchmarks/peers/requirements-%.txt
	@test -x $(@D)/bin/python || $(PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	@# torch first, and held by a constraint: a peer's looser pin would fetch GBs of CUDA wheels.
	$(@D)/bin/python -m pip install --quiet torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(@D)/bin/python -m pip install --quiet -c <(echo torch==$(TORCH_VERSION)) -r $<
	@touch $@

serve: setup  ## serve the newest packaged `recsys` model on SERVE_PORT (bentoml serve)
	$(BIN)/bentoml serve --port $(SERVE_PORT)

bento: setup  ## build a Bento (service + code + newest model) from bentofile.yaml, offline
	$(BIN)/bentoml build

helm-lint: setup  ## lint, render and validate the Helm charts: service, training and batch scoring (Kubernetes 1.29 and 1.33, no helm binary)
	$(BIN)/pytest tests/deploy -q

lint: setup  ## ruff
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:  ## remove generated data, logs and caches (keeps .venv)
	rm -rf $(DEMO_DIR) logs outputs multirun benchmarks/.work .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean  ## also remove .venv and the local MLflow store (mlflow.db, mlruns/)
	rm -rf $(VENV) mlflow.db mlruns
