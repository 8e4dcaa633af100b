# The README's two commands: `make demo` (prune -> report on the embedded default) and `make test`.
# Both build .venv/ on first use (tools/setup_env.sh: torch, then mmcv compiled with CPU ops, then the rest).
PY := .venv/bin/python
STAMP := .venv/.mmprune4u-stamp
PYTEST_ARGS ?=

.PHONY: env demo test test-all bench clean-env

env: $(STAMP)

$(STAMP): tools/setup_env.sh setup.py
	bash tools/setup_env.sh

demo: env
	$(PY) tools/demo.py

test: env
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: env
	$(PY) tools/benchmark.py $(BENCH_ARGS)

test-all: env
	$(PY) -m pytest $(PYTEST_ARGS)

clean-env:
	rm -rf .venv
