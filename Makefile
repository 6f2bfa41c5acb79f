# `make course` builds the course on the embedded model; `make test` runs every test.
# Both create the virtual environment .venv with pip on first use and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: course test env measure train clean

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

env: $(INSTALLED)

course: env
	$(PY) -m helpers.environment
	$(PY) scripts/measure_model.py

test: env
	$(PY) -m pytest

measure: env
	$(PY) scripts/measure_model.py

# Retrain the embedded model from scratch (about 10 minutes on 2 cores) into build/, not over the packaged one.
train: env
	$(PY) -m helpers.train --out build/vgg11_shapes.pt

clean:
	rm -rf build
