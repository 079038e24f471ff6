# Two commands set everything up on a fresh machine: `make book` and `make test`.
# Every target first creates or refreshes .venv from requirements.txt (only when the
# requirements or pyproject.toml changed) and installs minioptim editable into it.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export JAX_PLATFORMS := cpu
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help venv book test unit notebooks test-cpus lint execute lab bench mutate device-check clean

help:
	@echo "make book     build the HTML book into _build/html"
	@echo "make test     lint, unit tests, book build + browser checks, nbval on every notebook,"
	@echo "              and make test-cpus"
	@echo "make test-cpus"
	@echo "              on the kernels of an AVX2 and of an SSE4.2 CPU (emulated), the unit"
	@echo "              tests that compare numbers bit for bit or to measured tolerances"
	@echo "              and nbval on every notebook: other x86-64 CPUs round differently"
	@echo "make execute  re-run every notebook in a fresh kernel and save its outputs (NB=name: one)"
	@echo "make lab      open JupyterLab on book/"
	@echo "make bench    time minioptim against torch.optim: python -m minioptim.bench ARGS"
	@echo "              (e.g. make bench ARGS='--scale 0.05 --suite host-overhead')"
	@echo "make device-check  on a CUDA machine: the CUDA tests and a benchmark, into OUT="
	@echo "              (default device-check/), with that machine's python3 and PyTorch"
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

test: lint unit notebooks test-cpus

lint: $(STAMP)
	$(VENV)/bin/ruff check minioptim tests examples scripts book
	$(VENV)/bin/ruff format --check minioptim tests examples scripts book

# the library's tests alone (seconds); the book's tests run with the notebooks
unit: $(STAMP)
	$(PY) -m pytest tests --ignore tests/book

NBVAL := $(PY) -m pytest --nbval --nbval-current-env \
	--nbval-sanitize-with tests/nbval-sanitize.cfg -p no:cacheprovider

# tests/book: the sources (-m static), the built HTML (-m html), headless Chromium
# (-m browser); then strict nbval on every notebook of _toc.yml
notebooks: $(STAMP)
	$(PY) -m pytest tests/book
	$(NBVAL) $$($(PY) -m scripts.book list)

# Other x86-64 CPUs, emulated. PyTorch (ATen) and MKL choose their kernels by the CPU's
# vector instructions, and the kernels round differently: a sum or a matrix product adds
# in an order set by the vector width. A bit-for-bit comparison, a tolerance measured on
# one CPU or a printed digit can therefore pass on CI's AMD EPYC and fail on an Intel
# AVX-512 machine.
# ATEN_CPU_CAPABILITY and MKL_ENABLE_INSTRUCTIONS make this machine run the kernels of an
# AVX2 CPU and of one without AVX (SSE4.2). The tests below compare minioptim with
# torch.optim or a reference, bit for bit or with tolerances measured on one CPU, through
# vectorised kernels, reductions (norms, clip_grad_norm_, layout.norm) and matrix products
# (models, Muon); the scheduler matrix of test_integration is left out (its optimizers are
# test_registry's, its schedules Python arithmetic). nbval checks every printed digit.
# Each instruction set compiles into its own torch.compile cache: inductor's cache does
# not tell them apart, and a kernel built for one gives wrong numbers under another.
# About 9 minutes on a 2-core CPU (4.5 per instruction set: 2 unit tests, 2.5 nbval).
CPUS := avx2:AVX2 default:SSE4_2
EXACTNESS_TESTS := tests/test_equivalence.py tests/test_registry.py \
	tests/test_properties.py tests/test_clients.py tests/test_clients_trainers.py \
	tests/test_integration.py tests/test_module.py tests/test_extension_api.py \
	tests/test_state.py tests/test_sign_sgd.py tests/test_optax.py tests/test_precision.py \
	--deselect tests/test_integration.py::test_every_lr_scheduler_drives_minioptim_as_torch

test-cpus: $(STAMP)
	@set -e; for cpu in $(CPUS); do \
		export ATEN_CPU_CAPABILITY=$${cpu%%:*} MKL_ENABLE_INSTRUCTIONS=$${cpu##*:}; \
		export TORCHINDUCTOR_CACHE_DIR=$${TMPDIR:-/tmp}/torchinductor-$$(id -un)-$${cpu%%:*}; \
		echo "== ATEN_CPU_CAPABILITY=$$ATEN_CPU_CAPABILITY MKL_ENABLE_INSTRUCTIONS=$$MKL_ENABLE_INSTRUCTIONS"; \
		$(PY) -m pytest -q $(EXACTNESS_TESTS); \
		$(NBVAL) -q $$($(PY) -m scripts.book list); \
	done

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

# On a CUDA machine, with its own PyTorch (not .venv): CUDA tests and a benchmark run,
# everything into one folder (OUT=device-check by default; see scripts/device_check.sh).
device-check:
	bash scripts/device_check.sh $(or $(OUT),device-check)

clean:
	rm -rf _build
