# Two entry points (see README.md): `make demo` and `make test`.
# Both create .venv with this project installed in it (editable) the first time.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export GIT_PYTHON_REFRESH := quiet

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

.PHONY: install demo test lint clean
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gcp-robust demo --out gcp-robust-demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check robustbench_gcp corruptions tests scripts

clean:
	rm -rf $(VENV) sample-data gcp-robust-demo .pytest_cache
