# The two commands of the README: `make demo` and `make test`. Both build .venv when it is missing.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo docs lab readme check-sync

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

# notebooks are the source: cleaning and exporting must leave the tree as committed, README must match index
check-sync: setup
	@before=$$(git status --porcelain); \
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export; \
	after=$$(git status --porcelain); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-clean/nbdev-export changed the tree: run them and commit."; git status --porcelain; exit 1; fi
	$(BIN)/python tools/readme.py --check

test: check-sync
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

demo: setup
	$(BIN)/sharpbalance-demo

readme: setup
	$(BIN)/python tools/readme.py

lab: setup
	$(BIN)/jupyter lab nbs
