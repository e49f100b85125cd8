# The two commands of the README: `make demo` and `make test`. Both build .venv when it is missing.
# What a target needs from outside .venv (a Python that makes venvs, Chromium, npm, Quarto) is checked first:
# root installs Debian's packages; anyone else is told in one line what to install, instead of an error from a tool.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
# the interpreter that makes .venv (Python 3.11+ with venv and ensurepip)
PYTHON   ?= python3
# Debian's Chromium for the browser tests (tests/conftest.py reads it as SB_CHROMIUM; falls back to Playwright's own)
CHROMIUM ?= /usr/bin/chromium
export SB_CHROMIUM := $(CHROMIUM)
NPM      ?= npm
QUARTO   ?= quarto
# non-empty when make runs as root, which may apt-get what is missing (`make ... AS_ROOT=` acts as a normal user)
AS_ROOT  ?= $(filter 0,$(shell id -u))
# where `playwright install chromium` puts its browsers
PW_BROWSERS := $${PLAYWRIGHT_BROWSERS_PATH:-$$HOME/.cache/ms-playwright}

.PHONY: setup test test-cpus demo docs lab lint readme check-sync browser-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/pip || { \
	  if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	    echo "make: no $(PYTHON) on PATH to create $(VENV): install Python 3.11+ or run make PYTHON=/path/to/python3.11"; exit 1; \
	  elif ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	    echo "make: $(PYTHON) is older than Python 3.11: install 3.11+ or run make PYTHON=/path/to/python3.11"; exit 1; \
	  fi; \
	  $(PYTHON) -m venv --clear $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
	    echo "make: $(PYTHON) cannot create $(VENV) (no venv/ensurepip): install python3-venv (sudo apt-get install python3-venv)"; exit 1; }; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

# headless Chromium (Debian's package) and npm, for the docs build and the browser tests. Root installs what is
# missing with apt-get; anyone else gets one line saying what to install (the browser tests then skip, or fail
# under CI=true). Playwright's own Chromium (`playwright install chromium`) counts as a Chromium.
browser-deps:
	@if [ -n "$(AS_ROOT)" ] && command -v apt-get >/dev/null; then \
	  test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	  command -v $(NPM) >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }; \
	else \
	  miss=; \
	  test -x $(CHROMIUM) || compgen -G "$(PW_BROWSERS)/chromium*" >/dev/null || miss="no Chromium (run: $(BIN)/playwright install chromium)"; \
	  command -v $(NPM) >/dev/null || [ -d .cache/npm ] || miss="$${miss:+$$miss; }no npm for the docs site (install Node.js and npm)"; \
	  [ -z "$$miss" ] || echo "make: browser tests will not run here: $$miss"; \
	fi

# notebooks are the source: cleaning and exporting must leave the tree as committed, and README must match index
# TREE_STATE hashes the diff against HEAD (staged and not) and the untracked files' names and contents, so a file
# already modified before the check and changed again by nbdev is noticed too (`git status` would not show it)
UNTRACKED  := git ls-files -z --others --exclude-standard
TREE_STATE := { git diff --no-ext-diff --no-textconv --no-color --binary HEAD; $(UNTRACKED); \
                $(UNTRACKED) | xargs -0 git hash-object --; } | git hash-object --stdin
check-sync: setup
	@before=$$($(TREE_STATE)); \
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export; \
	after=$$($(TREE_STATE)); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-clean/nbdev-export changed the tree: run them and commit."; git status --porcelain; exit 1; fi
	$(BIN)/python tools/readme.py --check

# lessons in the notebooks (slow/gpu cells skipped), then the end-to-end tests; pytest's summary line comes last.
# The lessons run twice: with this CPU's fastest kernels, and again as an old x86-64 CPU would compute them
# (PORTABLE: PyTorch's default kernel set, MKL and oneDNN capped at SSE4), so a lesson whose assertion holds only for
# one CPU's float32 rounding fails here rather than on someone else's machine.
# tests/test_packaging.py builds the sdist and wheel and installs the wheel into a fresh venv (about a minute).
# pytest runs one test file per worker (pytest-xdist, a worker per core), one thread each: on 2 cores the end-to-end
# tests take about 12 minutes instead of 17, since many of them wait on subprocesses.
NBTEST   := OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2
PYTEST   := OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -p no:cacheprovider --durations=15 -n auto --dist loadfile
PORTABLE := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41
test: check-sync browser-deps
	$(NBTEST)
	$(PORTABLE) $(NBTEST)
	$(PYTEST)

# every kernel set this CPU has (default, avx2, avx512 where present), MKL and oneDNN capped to match:
# lessons and end-to-end tests under each
CPU_CAPS = $(shell $(BIN)/python -c "import torch; c = torch.backends.cpu.get_cpu_capability().lower(); \
             print(*['default', 'avx2', 'avx512'][:1 + ['default', 'avx2', 'avx512'].index(c if c in ('avx2', 'avx512') else 'default')])")
caps_env = ATEN_CPU_CAPABILITY=$(1) $(if $(filter default,$(1)),MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41,$(if $(filter avx2,$(1)),MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2,))
test-cpus: check-sync browser-deps
	@set -e; $(foreach cap,$(CPU_CAPS),echo "=== $(call caps_env,$(cap))"; $(call caps_env,$(cap)) $(NBTEST); $(call caps_env,$(cap)) $(PYTEST);)

# ruff on the exported modules (rules in pyproject.toml's [tool.ruff]); fix findings in the notebooks. Not in `make test` yet.
lint: setup
	$(BIN)/ruff check sharpbalance

demo: setup
	$(BIN)/sharpbalance-demo

readme: setup
	$(BIN)/python tools/readme.py

# Quarto present: nbdev-docs. Otherwise the offline build (tools/build_docs.py, which needs npm once to fill
# .cache/npm) and a browser check of every page (skipped, with the reason, when there is no Chromium).
docs: setup
	@if [ -n "$(AS_ROOT)" ]; then $(MAKE) -s --no-print-directory browser-deps; fi
	@if command -v $(QUARTO) >/dev/null 2>&1; then $(BIN)/nbdev-docs; \
	elif ! command -v $(NPM) >/dev/null 2>&1 && [ ! -d .cache/npm ]; then \
	  echo "make docs: needs Quarto (for nbdev-docs) or npm (once, for the offline build's MathJax): install Quarto, or Node.js and npm"; exit 1; \
	else \
	  $(BIN)/python tools/build_docs.py && \
	  SB_DOCS_SITE=_docs $(BIN)/python -m pytest tests/test_docs.py -q -rs -p no:cacheprovider -k page; fi

lab: setup
	$(BIN)/jupyter lab nbs
