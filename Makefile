# Two commands: `make demo` (set up + run the demo) and `make test` (set up + run the tests).
# Set-up installs the local CPU torch wheel first (pinned), so nothing resolves a multi-GB CUDA torch; then the
# package with its dev extras, the worker's (runpod), the evaluation's (lm-eval) and DeepSpeed. It is skipped when
# pyproject.toml has not changed since the last install.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-quick lint docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@start=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip && \
	$(PY) -m pip install -q $(TORCH_PIN) && \
	$(PY) -m pip install -q -e ".[dev,worker,eval,deepspeed]" && \
	touch $(STAMP) && echo "[setup] environment ready in $$(( $$(date +%s) - start ))s"

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -q

# The quick lane: everything but the tests marked slow (trainings in subprocesses, servers, kills); CI runs both.
test-quick: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

docs: setup
	for method in sft dpo kto; do $(VENV)/bin/finetuning schema --method $$method --markdown > docs/config-reference-$$method.md; done
	$(PY) -m finetuning.config.dialects.docs
	$(PY) -m finetuning.train.memory_plan --update docs/multi-gpu.md

bench: setup
	$(PY) bench/sft_vs_trl.py
	$(PY) bench/checkpoint_save.py
	$(PY) bench/startup.py
	$(PY) bench/data_pipeline.py
	$(PY) bench/packing.py

clean:
	rm -rf demo_output checkpoints logs .pytest_cache
