# The two commands of the README: `make demo` and `make test`. Both build .venv when it is missing.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-cpus demo docs lab readme check-sync browser-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

# headless Chromium (Debian's package) and npm, for the docs build and the browser tests; never `playwright install`
browser-deps:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

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
# The lessons run twice: with this CPU's fastest kernels and with PyTorch's portable ones (ATEN_CPU_CAPABILITY=default),
# so a lesson whose assertion holds only for one CPU's float32 rounding fails here rather than on someone else's machine.
NBTEST := OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2
PYTEST := $(BIN)/python -m pytest tests -q -p no:cacheprovider
test: check-sync browser-deps
	$(NBTEST)
	ATEN_CPU_CAPABILITY=default $(NBTEST)
	$(PYTEST)

# every kernel set this CPU has (default, avx2, avx512 where present): lessons and end-to-end tests under each
CPU_CAPS = $(shell $(BIN)/python -c "import torch; c = torch.backends.cpu.get_cpu_capability().lower(); \
             print(*['default', 'avx2', 'avx512'][:1 + ['default', 'avx2', 'avx512'].index(c if c in ('avx2', 'avx512') else 'default')])")
test-cpus: check-sync browser-deps
	@set -e; for cap in $(CPU_CAPS); do \
	  echo "=== ATEN_CPU_CAPABILITY=$$cap"; \
	  ATEN_CPU_CAPABILITY=$$cap $(NBTEST); \
	  ATEN_CPU_CAPABILITY=$$cap $(PYTEST); \
	done

demo: setup
	$(BIN)/sharpbalance-demo

readme: setup
	$(BIN)/python tools/readme.py

docs: setup browser-deps
	@if command -v quarto >/dev/null 2>&1; then $(BIN)/nbdev-docs; else \
	  $(BIN)/python tools/build_docs.py && \
	  SB_DOCS_SITE=_docs $(BIN)/python -m pytest tests/test_docs.py -q -p no:cacheprovider -k page; fi

lab: setup
	$(BIN)/jupyter lab nbs
