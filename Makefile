# Two commands for a fresh machine: `make demo` and `make test` (they create the venv).
PYTHON310 ?= $(HOME)/.pyenv/versions/3.10.13/bin/python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= demo_workdir

IMAGE ?= ghcr.io/tfx-image-transfer/pipeline:0.1.0

.PHONY: install chromium demo test test-fast lint format bench compile clean

$(STAMP): setup.py constraints.txt
	@test -x "$(PYTHON310)" || { echo "Python 3.10 not found at $(PYTHON310): TFX 1.16 needs it (set PYTHON310=/path/to/python3.10)."; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3" "setuptools==69.5.1" "wheel==0.48.0"
	$(BIN)/pip install --quiet --progress-bar off -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/image-pipeline demo --workdir $(WORKDIR)

# The HTML report's browser test (tests/test_html_report.py) renders it in headless Chromium.
chromium:
	@command -v chromium >/dev/null || { \
		command -v apt-get >/dev/null || { echo "Chromium not found: install it (the HTML report test needs it)."; exit 1; }; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		echo "Installing chromium with apt-get (the HTML report test needs it)"; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	}

test: $(STAMP) chromium
	$(BIN)/python -m pytest -ra tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	test -d $(WORKDIR)/serving/image_classifier || $(BIN)/image-pipeline demo --workdir $(WORKDIR)
	$(BIN)/python benchmarks/transformed_format.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/transform.py
	$(BIN)/python benchmarks/transform.py --images 10000 --out benchmarks/results/transform_10k.json
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/serving.py --model-dir $(WORKDIR)/serving/image_classifier
	$(BIN)/python benchmarks/serving_batching.py --model-dir $(WORKDIR)/serving/image_classifier
	$(BIN)/python benchmarks/tflite.py --model-dir $(WORKDIR)/serving/image_classifier --holdout $(WORKDIR)/holdout
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/pipeline_run.py
	$(BIN)/python benchmarks/vs_notebook.py --dataset demo --stage1-epochs 6 --stage2-epochs 6 --stage2-learning-rate 3e-4 --fine-tune-layers 1000
	$(BIN)/python benchmarks/vs_notebook.py --dataset digits
	$(BIN)/python benchmarks/vs_notebook.py --dataset shapes:6667 --out benchmarks/results/vs_notebook_20k.json

compile: $(STAMP)
	$(BIN)/image-pipeline compile --config kubeflow/config.yaml --image $(IMAGE) --output kubeflow/pipeline.yaml

clean:
	rm -rf $(WORKDIR) tfx_root serving .pytest_cache
