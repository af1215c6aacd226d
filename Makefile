# `make quickstart` and `make test` each work on a fresh machine with Python 3.11 and pip.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: quickstart test setup setup-test browser speech

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: on the project's machines this takes the local CPU build; a bare
# `torch` requirement would pull a multi-GB CUDA build.
$(BIN)/.torch: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet torch==2.13.0
	touch $@

$(BIN)/.danlu: $(BIN)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.danlu-test: $(BIN)/.torch pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/.danlu
setup-test: $(BIN)/.danlu-test

quickstart: setup
	$(BIN)/danlu quickstart

# The studio's browser tests drive Debian's Chromium through Playwright (`playwright install` downloads a
# browser of its own, which these machines cannot fetch). Without it they skip, saying so.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the studio's browser tests will skip"

# The speech tests also read words spoken by Debian's espeak-ng; without it those few skip, saying so.
speech:
	@command -v espeak-ng >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng) \
		|| echo "espeak-ng could not be installed: the tests that synthesise speech will skip"

# Two workers (pytest-xdist), whole files to each so module fixtures are built once; one intra-op thread per
# worker, because two workers of two threads each on two cores spin against each other.
test: setup-test browser speech
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --timeout=900 -p no:cacheprovider -n 2 --dist loadfile --durations=30
