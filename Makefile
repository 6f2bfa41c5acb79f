# `make course` builds the course on the embedded model; `make test` runs every test.
# Both create the virtual environment .venv with pip on first use and reuse it afterwards.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: course test env measure notebooks walkthrough benchmark train release clean grade benchmark-grading attribution-table shortcut-fix

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[instructor,dev]'  # -qq: setuptools' notes on editable installs are not for users
	touch $@

env: $(INSTALLED)

# Chromium for the real-browser test (tests/test_browser.py): installed with apt-get where it is missing and this
# runs as root; otherwise one line says how to enable that test, which then skips.
.PHONY: browser
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Chromium for the browser test (apt-get install chromium)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		{ apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } \
			>/dev/null 2>&1 || echo "could not install Chromium: the browser test will be skipped" \
			"(enable it: apt-get update && apt-get install chromium)"; \
	else \
		echo "no /usr/bin/chromium: the browser test will be skipped (enable it: sudo make browser," \
			"or sudo apt-get install chromium)"; \
	fi

# Check the set-up, generate the student versions, render the walkthrough; then say where everything is.
# Measuring the model is a maintainer's task: `make measure`.
course: env
	@echo "[1/3] checking the environment"
	@$(PY) -m helpers.environment
	@echo "[2/3] generating the student notebooks (solutions/ -> notebooks/)"
	@$(PY) scripts/generate_notebooks.py
	@echo "[3/3] executing the solved notebooks and rendering the walkthrough"
	@$(PY) scripts/walkthrough.py
	@echo ""
	@echo "Done. The walkthrough (solved notebooks, every figure): build/walkthrough/index.html"
	@echo "Students: $(VENV)/bin/jupyter lab notebooks/   (instructors: make release, make grade; maintainers: make test)"

test: env browser
	$(PY) -m pytest

measure: env
	$(PY) scripts/measure_model.py

# Notebook 14's fix against its control on 1,000 scenes (the README's table; 1-3 minutes).
shortcut-fix: env
	$(PY) scripts/shortcut_fix.py

# Notebook 12's table of every attribution method on 200 held-out images, into helpers/tables/ (minutes).
attribution-table: env
	$(PY) scripts/attribution_table.py

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
