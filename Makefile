# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: demo test lint unit workflow venv clean-demo

venv: $(VENV)/.installed

# reinstalled when pyproject.toml changes
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $@

## demo: the whole pipeline on the embedded default (generated images, tiny random model, CPU)
demo: venv
	$(SNAKEMAKE) --configfile config/demo.yaml --cores $(CORES) --printshellcmds
	@$(BIN)/python -m s3a.report results/summary.parquet

## test: lint, workflow checks and every test tier that runs here
test: venv lint
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the test tree is missing" >&2; exit 1; fi; \
	exit $$rc

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

clean-demo:
	rm -rf results/ resources/demo resources/models logs/ benchmarks/*/
