# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the venv's bin/ leads PATH for every command here: Snakemake's rules run `python` and `torchrun`
# from PATH (with `--software-deployment-method conda`, from workflow/envs/s3a.yaml instead)
export PATH := $(abspath $(BIN)):$(PATH)
CORES ?= 2
# Python caches compiled modules (and pytest its assertion-rewritten tests) in __pycache__ folders even
# where the environment says not to: each test process would otherwise compile every test module
# again, about 4 s of each pytest process's start (measured: collection 13.3 s, then 9.5 s cached)
unexport PYTHONDONTWRITEBYTECODE
SNAKEMAKE := $(BIN)/snakemake
# the single-node Slurm of the cluster test tier; SLURM=0 leaves it alone
LOCAL_SLURM := ci/local-slurm.sh
SLURM ?= 1
# e.g. `make test PYTEST_ARGS=tests/integration`
PYTEST_ARGS ?=
# the unit tier (tests not marked slow) runs in this many pytest-xdist processes, each with one torch
# thread (OMP_NUM_THREADS=1: two processes of two threads each would fight over the 2 cores of CI), a
# worker that runs out of tests taking some of the other's (worksteal: a few tests wait on real
# time-outs); UNIT_WORKERS=0 runs it in this process. On 2 idle cores: 28-31 s instead of 48 s
UNIT_WORKERS ?= 2
UNIT_PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" -n $(UNIT_WORKERS) --dist worksteal
# the slow tier runs in this many processes: the Slurm run (which mostly waits on Slurm), the demo run
# and the photo folder's run start at once, one each, then the other files; a file stays in one process,
# so that a module's shared workflow run happens once (tests/conftest.py sets the order of the files).
# Three on 2 cores: the third fills the time the others wait. Torch runs one thread per process, as in
# the unit tier: three processes of two threads each on 2 cores stretched a head-training test of many
# small steps from 17 s alone to 248 s; the jobs whose rule gives them threads (`threads:`, e.g. the
# embeddings) still use them. SLOW_WORKERS=0 runs it in this process; the 12 longest steps are listed
# at the end (where the time goes)
SLOW_WORKERS ?= 3
SLOW_PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m slow -n $(SLOW_WORKERS) --dist loadfile \
	--no-loadscope-reorder --durations=12
# extra Snakemake arguments of `make demo`, e.g. `make demo ARGS="--unlock"` or `ARGS="-n"`
ARGS ?=

.PHONY: demo test unit lint venv clean-demo

venv: $(VENV)/.installed

# reinstalled when pyproject.toml or the tested package set (constraints.txt) changes; the library
# with every extra, and the development tools of pyproject's `dev` dependency group (PEP 735), which
# needs pip >= 25.1 (a new venv may bring an older one: it is upgraded first, from the package index)
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]' --group dev
	touch $@

## demo: the whole pipeline on the embedded default (generated images, tiny random model, CPU);
## --rerun-incomplete: after a hard kill, `make demo` again resumes
demo: venv
	$(SNAKEMAKE) --configfile config/demo.yaml --cores $(CORES) --rerun-incomplete $(ARGS)
	@# the summary after a real run only (a dry run or --unlock has none to show)
	@if [ -z "$(filter -n --dry-run --dryrun --unlock --lint,$(ARGS))" ]; then \
		$(BIN)/python -m s3a.report results/summary.parquet; fi

## test: lint, workflow checks and every test tier that runs here (the unit tier first, in parallel
## as `make unit` runs it, then the slow tests in three processes: the Slurm, demo and photo-folder
## runs at once, each shared run's tests in one process); the cluster tier runs on a local
## Slurm that `ci/local-slurm.sh up` starts (root + apt) and `down` stops afterwards, pass or fail.
## Without one the slurm tests skip (S3A_REQUIRE_SLURM=1 makes them fail). A Slurm already up from
## `ci/local-slurm.sh up` is used and left running. `make test SLURM=0` skips the start.
## `ci/browser.sh` installs chromium (root + apt) for the gallery's headless-browser test.
test: venv lint
	@ci/browser.sh
	@started=0; \
	trap 'if [ $$started = 1 ]; then $(LOCAL_SLURM) down; fi' EXIT; trap 'exit 130' INT TERM; \
	if [ "$(SLURM)" = 1 ] && ! $(LOCAL_SLURM) status >/dev/null 2>&1; then \
		started=1; \
		$(LOCAL_SLURM) up || echo "make test: no local Slurm (see the error above):" \
			"the slurm tests skip, or fail when S3A_REQUIRE_SLURM=1" >&2; \
	fi; \
	$(UNIT_PYTEST) $(PYTEST_ARGS); unit=$$?; \
	$(SLOW_PYTEST) $(PYTEST_ARGS); slow=$$?; \
	if [ $$unit -eq 5 ] && [ $$slow -eq 5 ]; then \
		echo "pytest collected no tests: the test tree is missing" >&2; exit 1; fi; \
	for rc in $$unit $$slow; do if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; done

## unit: the fast tier, every test not marked slow (no subprocesses, torchrun, Snakemake runs or large
## planted searches or waits on real time-outs): under 30 s on 2 idle cores (27.2 and 27.4 s measured
## at load 0.8-1.3; the first run, which writes the bytecode caches, takes a few seconds more);
## `make test` runs everything
unit: venv
	$(UNIT_PYTEST) -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

## clean-demo: what the demo made, and only that (its datasets and models are read from
## config/demo.yaml: their results, generated images, random model, training states, logs; the
## summaries when they hold only demo rows); other folders' and benchmarks' results are kept
clean-demo:
	$(BIN)/python -m s3a.cleandemo config/demo.yaml
