# The README's two commands: `make demo` (prune -> report on the embedded default) and `make test`.
# Both build .venv/ on first use (tools/setup_env.sh: torch, then mmcv compiled with CPU ops, then the rest).
PY := .venv/bin/python
STAMP := .venv/.mmprune4u-stamp
PYTEST_ARGS ?=
# pytest-xdist: one worker per core (at most 4: each holds the OpenMMLab stack in memory), one OpenMP
# thread each (tests/conftest.py), test files kept whole on one worker (their module fixtures are costly) and handed
# out longest first (the `heavy` marks; tests/conftest.py).
# TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder

.PHONY: env demo test test-all bench clean-env

env: $(STAMP)

$(STAMP): tools/setup_env.sh setup.py
	bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

test: env
	$(PY) -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# two processes share the cells (tools/benchmark.py --jobs), one OpenMP thread each on 2 cores
BENCH_JOBS ?= 2
bench: env
	$(PY) tools/benchmark.py --jobs $(BENCH_JOBS) $(BENCH_ARGS)

test-all: env
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

clean-env:
	rm -rf .venv
