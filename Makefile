# Two commands for a fresh machine: `make demo` and `make test` (they create the venv).
# TFX 1.21's ml-metadata and tensorflow-data-validation wheels need glibc >= 2.39 (Debian 13,
# Ubuntu 24.04): there every target runs natively with the system python3 (3.12 or 3.13). On an
# older host the same targets run inside a Debian 13 userland that tools/userland.sh builds once
# under .userland/ (mmdebstrap; about a minute and 1.4 GB), with this checkout at the same path.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= demo_workdir
GLIBC := $(shell getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)
NATIVE ?= $(shell printf '2.39\n%s\n' "$(GLIBC)" | sort -V -C && echo 1 || echo 0)

IMAGE ?= ghcr.io/tfx-image-transfer/pipeline:0.1.0

.PHONY: install chromium fashion-data demo test test-fast lint format bench compile clean userland shell

ifeq ($(NATIVE),0)
# glibc $(GLIBC) < 2.39: every target below runs inside the userland instead.
install chromium fashion-data demo test test-fast lint format bench compile:
	tools/in-userland.sh $(MAKE) $@ NATIVE=1 WORKDIR=$(WORKDIR) IMAGE=$(IMAGE)
else

$(STAMP): setup.py constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 12), (3, 13)))' || { \
		echo "$(PYTHON) is not Python 3.12 or 3.13: TFX 1.21 needs one (set PYTHON=/path/to/python3.13)."; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3" "setuptools==69.5.1" "wheel==0.48.0"
	$(BIN)/pip install --quiet --progress-bar off -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/image-pipeline demo --workdir $(WORKDIR)

# The HTML report's browser test (tests/pipeline/report/test_html_report.py) renders it in headless Chromium.
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
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Fashion-MNIST for benchmarks/vs_notebook.py --dataset fashion (a Debian package; tools/in-userland.sh shows the
# host's /usr/share/datasets inside the userland).
fashion-data:
	@test -d /usr/share/datasets/fashion-mnist || { \
		command -v apt-get >/dev/null || { echo "Install Debian's dataset-fashion-mnist (benchmarks/vs_notebook.py --dataset fashion)."; exit 1; }; \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		echo "Installing dataset-fashion-mnist with apt-get (benchmarks/vs_notebook.py --dataset fashion)"; \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	}

bench: $(STAMP) fashion-data
	test -d $(WORKDIR)/serving/image_classifier || $(BIN)/image-pipeline demo --workdir $(WORKDIR)
	$(BIN)/python benchmarks/transformed_format.py
	$(BIN)/python benchmarks/ingest.py --workers 1,2,4
	$(BIN)/python benchmarks/transform.py
	$(BIN)/python benchmarks/transform.py --images 10000 --workers 1,2,4 --out benchmarks/results/transform_10k.json
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/serving.py --model-dir $(WORKDIR)/serving/image_classifier
	$(BIN)/python benchmarks/serving_batching.py --model-dir $(WORKDIR)/serving/image_classifier
	$(BIN)/python benchmarks/tflite.py --model-dir $(WORKDIR)/serving/image_classifier --holdout $(WORKDIR)/holdout
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/pipeline_run.py
	$(BIN)/python benchmarks/vs_notebook.py --dataset demo --stage1-epochs 6 --stage2-epochs 6 --stage2-learning-rate 3e-4 --fine-tune-layers 1000
	$(BIN)/python benchmarks/vs_notebook.py --dataset digits --seeds 1,2,3 --variant 'old_default={"trainer": {"fine_tune_schedule": "top_n"}}'
	$(BIN)/python benchmarks/vs_notebook.py --dataset fashion --seeds 1,2,3 --variant 'old_default={"trainer": {"fine_tune_schedule": "top_n"}}'
	$(BIN)/python benchmarks/vs_notebook.py --dataset digits --seeds 1 --variant 'tuned={"tuning": {"trials": 8}}' --out benchmarks/results/vs_notebook_digits_tuned.json
	$(BIN)/python benchmarks/vs_notebook.py --dataset shapes:6667 --out benchmarks/results/vs_notebook_20k.json
	# Issue #27's fixed cost: MobileNetV2 alpha 1.0 (weights pretrained here on 1,200 shapes: ImageNet is offline).
	test -f $(WORKDIR)/alpha1.weights.h5 || { $(BIN)/image-pipeline generate-data --out $(WORKDIR)/source200 \
		--domain source --per-class 200 --seed 1 && $(BIN)/image-pipeline pretrain --data-root $(WORKDIR)/source200 \
		--out $(WORKDIR)/alpha1.weights.h5 --backbone-alpha 1.0 --epochs 4; }
	$(BIN)/python benchmarks/vs_notebook.py --dataset digits --alpha 1.0 --weights $(WORKDIR)/alpha1.weights.h5 \
		--seeds 1,2,3 --out benchmarks/results/vs_notebook_digits_alpha1.json
	$(BIN)/python benchmarks/vs_notebook.py --dataset shapes:6667 --alpha 1.0 --weights $(WORKDIR)/alpha1.weights.h5 \
		--out benchmarks/results/vs_notebook_20k_alpha1.json

compile: $(STAMP)
	$(BIN)/image-pipeline compile --config kubeflow/config.yaml --image $(IMAGE) --output kubeflow/pipeline.yaml

endif

userland:
	tools/userland.sh

# A shell inside the userland (the venv is $(BIN); it only runs there on an old host).
shell:
	tools/in-userland.sh /bin/bash

clean:
	rm -rf $(WORKDIR) tfx_root serving .pytest_cache
