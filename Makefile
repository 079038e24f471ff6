# Two commands set everything up on a fresh machine: `make book` and `make test`.
# Every target first creates or refreshes .venv from requirements.txt (only when the
# requirements or pyproject.toml changed) and installs minioptim editable into it.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export JAX_PLATFORMS := cpu
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help venv book test unit notebooks lint execute lab bench mutate clean

help:
	@echo "make book     build the HTML book into _build/html"
	@echo "make test     lint, unit tests, book build + browser checks, nbval on every notebook"
	@echo "make execute  re-run every notebook in a fresh kernel and save its outputs (NB=name: one)"
	@echo "make lab      open JupyterLab on book/"
	@echo "make bench    time minioptim against torch.optim: python -m minioptim.bench ARGS"
	@echo "              (e.g. make bench ARGS='--scale 0.05 --suite host-overhead')"
	@echo "make mutate   mutation testing: apply scripts/mutants.py to a copy of minioptim,"
	@echo "              run the fast library tests on each, print the score and survivors"
	@echo "              (not part of make test; ARGS='-k adopt' or ARGS='--jobs 1')"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W --keep-going

test: lint unit notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check minioptim tests examples scripts book
	$(VENV)/bin/ruff format --check minioptim tests examples scripts book

# the library's tests alone (seconds); the book's tests run with the notebooks
unit: $(STAMP)
	$(PY) -m pytest tests --ignore tests/book

# tests/book: the sources (-m static), the built HTML (-m html), headless Chromium
# (-m browser); then strict nbval on every notebook of _toc.yml
notebooks: $(STAMP)
	$(PY) -m pytest tests/book
	$(PY) -m pytest --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval-sanitize.cfg -p no:cacheprovider \
		$$($(PY) -m scripts.book list)

# `make execute NB=01_gradient_descent.ipynb` re-runs one notebook only.
execute: $(STAMP)
	$(PY) -m scripts.book execute $(NB)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab book/

bench: $(STAMP)
	$(PY) -m minioptim.bench $(ARGS)

# Not part of `make test`: minutes of CPU (2 workers; see scripts/mutate.py)
mutate: $(STAMP)
	$(PY) -m scripts.mutate $(ARGS)

clean:
	rm -rf _build
