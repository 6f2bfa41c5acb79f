# `make course` builds the course on the embedded model; `make test` runs every test; `make help` lists the rest.
# Both create the virtual environment .venv with pip on first use and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SHELL := /bin/bash
# Recipes run without being echoed: each target says what it does, and errors still show.
.SILENT:

.PHONY: help course test env measure notebooks walkthrough benchmark benchmark-load train release clean grade \
	benchmark-grading benchmark-cluster profile-grading attribution-table shortcut-fix browser seccomp

help: ## list the targets
	echo "make TARGET, where TARGET is one of:"
	sed -n 's/^\([a-z-]*\):.*## \(.*\)/\1\t\2/p' $(MAKEFILE_LIST) | while IFS=$$'\t' read -r name text; do \
		printf '  %-19s %s\n' "$$name" "$$text"; done

# pip's own lines, less those that say nothing new (already satisfied, build steps): what is being fetched.
PIP_NEWS := grep --line-buffered -vE '^( +[^D ]| {3,}|Looking in|Requirement already satisfied|Obtaining|Checking if build backend|Getting requirements|Installing build dependencies|Preparing editable|Building editable|Created wheel|Stored in|Successfully built)'

$(INSTALLED): pyproject.toml
	test -x $(PY) || { echo "creating the virtual environment $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	echo "installing the course into $(VENV) with pip: torch and torchvision (the largest part), captum, scikit-learn,"
	echo "matplotlib, jupyterlab, nbgrader, pytest, playwright and what they need (first time: a few GB, minutes)"
	$(PY) -m pip install -e '.[instructor,dev]' 2>&1 | { $(PIP_NEWS) || true; }; exit $${PIPESTATUS[0]}
	touch $@

env: $(INSTALLED) ## create .venv and install the course into it (first use only; again when pyproject.toml changes)

# $(call system-package,CHECK,PACKAGE,WHAT FOR,WHAT HAPPENS WITHOUT IT): a Debian package installed with apt-get
# where CHECK fails and this runs as root; otherwise one line says what is missing and how to install it.
define system-package
	if $(1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(2) $(3) (apt-get install $(2))"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get install -y -qq $(2) || { apt-get update -qq && apt-get install -y -qq $(2); }; } >/dev/null 2>&1 \
			|| echo "could not install $(2): $(4) (enable it: apt-get update && apt-get install $(2))"; \
	else \
		echo "no $(2): $(4) (enable it: sudo make $@ or sudo apt-get install $(2))"; \
	fi
endef

browser: ## install Chromium for the real-browser test (apt-get, as root), or say how
	$(call system-package,[ -x /usr/bin/chromium ],chromium,for the browser tests,the browser tests will be skipped)

# libseccomp for the grading kernels' system-call filter (grader_tests/engine/syscalls.py); Debian's base system
# usually has it.
seccomp: ## install libseccomp2 for the grading sandbox's system-call filter (apt-get, as root), or say how
	$(call system-package,/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2',libseccomp2,for the grading \
		sandbox,grading kernels will run without their system-call filter)

# Check the set-up, generate the student versions, render the walkthrough; then say where everything is.
# Measuring the model is a maintainer's task: `make measure`.
course: env ## check the set-up, generate notebooks/, render build/walkthrough/ (with progress)
	echo "[1/3] checking the environment"
	$(PY) -m helpers
	echo "[2/3] generating the student notebooks (solutions/ -> notebooks/)"
	$(PY) scripts/generate_notebooks.py
	echo "[3/3] executing the solved notebooks and rendering the walkthrough"
	$(PY) scripts/walkthrough.py
	echo ""
	echo "Done. The walkthrough (solved notebooks, every figure): build/walkthrough/index.html"
	echo "Students: $(VENV)/bin/jupyter lab notebooks/   (instructors: make release, make grade; maintainers: make test)"

test: env browser seccomp ## every test (helpers, hidden checks, notebooks, release, grading, a real browser)
	$(PY) -m pytest

measure: env ## the embedded model's figures (accuracy, Grad-CAM and saliency on the object, speed)
	$(PY) scripts/measure_model.py

# Notebook 14's fix against its control on 1,000 scenes (the README's table; 1-3 minutes).
shortcut-fix: env ## notebook 14's fix against its control on 1,000 scenes (1-3 minutes)
	$(PY) scripts/shortcut_fix.py

# Notebook 12's table of every attribution method on 200 held-out images, into helpers/tables/ (minutes).
attribution-table: env ## notebook 12's table of every attribution method (helpers/tables/; 15-30 minutes)
	$(PY) scripts/attribution_table.py

# Student versions: solutions/ -> notebooks/ with nbgrader generate_assignment.
notebooks: env ## regenerate the student versions notebooks/ from solutions/
	$(PY) scripts/generate_notebooks.py

# Execute the solved notebooks and render them to build/walkthrough/index.html.
walkthrough: env ## execute the solved notebooks and render build/walkthrough/
	$(PY) scripts/walkthrough.py

# Time each solved notebook in a fresh kernel, with its peak memory (no HTML).
benchmark: env ## time each solved notebook in a fresh kernel, with its peak memory
	$(PY) scripts/walkthrough.py --no-html

# Notebook 14 alone, then beside two busy processes (NOTEBOOK=... for another).
benchmark-load: env ## a notebook's time alone and beside two busy processes (NOTEBOOK=14_shortcut)
	$(PY) scripts/benchmark_load.py --notebook $(or $(NOTEBOOK),14_shortcut)

# Retrain the embedded model from scratch into build/, not over the packaged one.
train: env ## retrain the embedded model from scratch into build/ (about 10 minutes)
	$(PY) -m helpers.train --out build/vgg11_shapes.pt

# The zip students get: build/release/visualizing-cnns-student.zip (notebooks/, helpers/, README, set-up files).
release: env ## the students' zip, build/release/visualizing-cnns-student.zip
	$(PY) scripts/release.py

# Autograde a class: SUBMISSIONS=<folder <student>/<assignment>/<notebook>.ipynb, or an LMS zip>; ASSIGNMENT=<name>
# grades that assignment only; SCHEDULER=tcp://host:8786 grades on that Dask cluster's workers instead of this
# machine's (docs/instructors.md#grading-on-many-machines); ARGS for more options (--full, --force, --workers N,
# --timeout S: `python -m grader_tests.engine.grade --help`).
grade: env seccomp ## autograde a class into build/grading/: SUBMISSIONS=<folder or LMS zip> [ASSIGNMENT=06_gradcam]
	test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder or zip> [ASSIGNMENT=<name>]" \
		"[ARGS='--full ...']"; exit 2; }
	$(PY) -m grader_tests.engine.grade "$(SUBMISSIONS)" $(if $(ASSIGNMENT),--assignment "$(ASSIGNMENT)") \
		$(if $(SCHEDULER),--scheduler "$(SCHEDULER)") $(ARGS)

# Seconds per submission, serial and parallel, on the fabricated class; overhead over plain execution.
benchmark-grading: env ## grading throughput, serial and parallel, against plain execution
	$(PY) scripts/benchmark_grading.py

# Two Dask workers pinned to a core each against one; the projection for 10,000 students on N machines.
benchmark-cluster: env ## grading on a Dask cluster: speed-up of 2 pinned workers over 1, projection
	$(PY) scripts/benchmark_cluster.py

# One worker, phase by phase: kernel start, cells, judges, nbgrader's steps, feedback; CPU time of all it runs.
profile-grading: env ## where one worker's grading time goes, per notebook and phase, and its CPU time
	$(PY) scripts/profile_grading.py

clean: ## remove build/ (the walkthrough, the release, grading results)
	rm -rf build
