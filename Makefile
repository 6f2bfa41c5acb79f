# `make course` builds the course on the embedded model; `make test` runs every test.
# Both create the virtual environment .venv with pip on first use and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: course test env measure notebooks walkthrough benchmark train release clean grade benchmark-grading

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

env: $(INSTALLED)

# Check the set-up, measure the embedded model, generate the student versions, render the walkthrough.
course: env
	$(PY) -m helpers.environment
	$(PY) scripts/measure_model.py
	$(PY) scripts/generate_notebooks.py
	$(PY) scripts/walkthrough.py

test: env
	$(PY) -m pytest

measure: env
	$(PY) scripts/measure_model.py

# Student versions: solutions/ -> notebooks/ with nbgrader generate_assignment.
notebooks: env
	$(PY) scripts/generate_notebooks.py

# Execute the solved notebooks and render them to build/walkthrough/index.html.
walkthrough: env
	$(PY) scripts/walkthrough.py

# Time each solved notebook in a fresh kernel, with its peak memory (no HTML).
benchmark: env
	$(PY) scripts/walkthrough.py --no-html

# Retrain the embedded model from scratch into build/, not over the packaged one.
train: env
	$(PY) -m helpers.train --out build/vgg11_shapes.pt

# The zip students get: build/release/visualizing-cnns-student.zip (notebooks/, helpers/, README, set-up files).
release: env
	$(PY) scripts/release.py

# Autograde a class: SUBMISSIONS=<folder <student>/<assignment>/<notebook>.ipynb, or an LMS zip>;
# ARGS for more options (--full, --force, --workers N, --timeout S: `python -m grader_tests.engine.grade --help`).
grade: env
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder or zip> [ARGS='--full ...']"; exit 2; }
	$(PY) -m grader_tests.engine.grade "$(SUBMISSIONS)" $(ARGS)

# Seconds per submission, serial and parallel, on the fabricated class; overhead over plain execution.
benchmark-grading: env
	$(PY) scripts/benchmark_grading.py

clean:
	rm -rf build
