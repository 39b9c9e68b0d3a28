# The two commands of the README:  make demo  and  make test.
# Both create the virtual environment on first use (Python 3.10+ is all they need).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pins that install from this machine's disk (x86_64, Python 3.11);
# override TORCH_SPEC on other platforms (e.g. TORCH_SPEC="torch==2.9.1 torchvision==0.24.1").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -q

.PHONY: demo test lint bench clean venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,ray]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/medaudit demo --out runs/demo --data-dir runs/demo-data

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(PY) bench/bench_ingest.py

clean:
	rm -rf runs .pytest_cache
