# ssagan_tf: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo
# Test processes (pytest-xdist); each test still runs whole in one process. 1 = one process, no xdist.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help venv demo test test-fast bench clean

help:
	@echo "make demo   end to end on the synthetic phantom cohort (outputs under $(DEMO_DIR)/)"
	@echo "make test   the whole test suite (what CI runs; ~19 min on 2 cores, 2 test processes)"
	@echo "make test-fast  the fast tier (~3 min), without end-to-end training and subprocess tests (edit-test loop)"
	@echo "make bench  the data benchmark (JSON + table); README lists the training and augmentation ones"

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PYTEST) tests

test-fast: venv
	$(PYTEST) -m "not slow" tests

demo: venv
	$(PY) -m scripts.demo --output_dir=$(DEMO_DIR)

bench: venv
	$(PY) benchmarks/bench_data.py

clean:
	rm -rf runs .pytest_cache
