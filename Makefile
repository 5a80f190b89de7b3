# Two commands for a newcomer: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The offline CPU wheel of torch lies on the development machines; elsewhere pip brings the usual build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,train,metrics,diffusion,annotate

.PHONY: venv install demo test lint format bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

venv install: $(VENV)/.installed

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/prefalign demo --out demo-output

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy  # src/prefalign, configured in pyproject.toml [tool.mypy]

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_score.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
