# Two entry points (see README.md): `make demo` and `make test`; on a GPU machine, `make gpu-check`.
# All create .venv with this project installed in it (editable) the first time.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export GIT_PYTHON_REFRESH := quiet

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

.PHONY: install demo test lint gpu-check clean
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gcp-robust demo --out gcp-robust-demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The GPU path verified and timed (CUDA tests, benches, eval, torchrun): one JSON file in
# $OUT, else gpu-check/. Without CUDA it runs the CPU parts at tiny sizes. README.md: Speed.
# Options of scripts/gpu_check.py through GPU_CHECK_ARGS, e.g. GPU_CHECK_ARGS=--quick.
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check robustbench_gcp corruptions tests scripts

clean:
	rm -rf $(VENV) sample-data gcp-robust-demo gpu-check .pytest_cache
