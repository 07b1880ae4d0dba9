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

.PHONY: install demo test lint gpu-check wheels clean
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gcp-robust demo --out gcp-robust-demo

# One pytest-xdist worker per usable core (CPU set and cgroup quota; 8 at most: each holds its own
# torch), read once .venv exists; TEST_WORKERS=1 for one worker, TEST_WORKERS=0 for none.
TEST_WORKERS ?= $(shell $(BIN)/python -c "from robustbench_gcp.engine.cpus import usable_cpus; print(min(8, usable_cpus()))" 2>/dev/null || echo 1)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The GPU path verified and timed (CUDA tests, benches, eval, torchrun): one JSON file in
# $OUT, else gpu-check/. Without CUDA it runs the CPU parts at tiny sizes. README.md: Speed.
# Options of scripts/gpu_check.py through GPU_CHECK_ARGS, e.g. GPU_CHECK_ARGS=--quick, or
# GPU_CHECK_ARGS="--only profile --profile" for where the evals' time goes (torch.profiler).
# A GPU machine with torch but no package index (an air-gapped node): `make wheels` where there is a
# network, copy .whl/ along, then `make gpu-check WHEELS=.whl` there (its own python3, wheels offline).
WHEELS ?=
ifeq ($(WHEELS),)
gpu-check: $(STAMP)
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)
else
gpu-check:
	$(PYTHON) scripts/gpu_check.py --wheels $(WHEELS) $(GPU_CHECK_ARGS)
endif

# What a CUDA image with torch, torchvision, timm and the scientific stack usually lacks (pure Python;
# av, for ImageNet-P videos only, is left out: gpu-check does not need it).
OFFLINE_PACKAGES ?= imagecorruptions==1.1.2 foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.1.45 gitdb==4.0.12 \
	smmap==5.0.3
wheels:
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		-d .whl $(OFFLINE_PACKAGES)

lint: $(STAMP)
	$(BIN)/ruff check robustbench_gcp corruptions tests scripts

clean:
	rm -rf $(VENV) sample-data gcp-robust-demo gpu-check .whl .pytest_cache
