# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Two installs in one venv: `make run` needs only the serving install (the bot and
# `python -m diagnosis predict`, on ONNX Runtime: no torch); `make test`, the benchmarks and
# training need the full one (the [train] and [dev] extras: torch, timm, pytest...).
SERVE_STAMP := $(VENV)/.installed-serving
STAMP       := $(VENV)/.installed
# torch and torchvision as pinned in pyproject.toml's [train] extra (the one place they are).
TORCH_PINS  := $(shell grep -oE '"torch(vision)?==[^"]+"' pyproject.toml | tr -d '"')
# The Firestore emulator the store tests run against (Node; Google's own needs a download).
EMULATOR := .emulator/node_modules/@firestore-emulator/server
EMULATOR_VERSION := 0.3.15

.PHONY: install install-serving run test lint format bench bench-agreement bench-cli clean browser mutate

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $(SERVE_STAMP)

# torch and torchvision are installed first, on their own, so that pip never picks another
# (multi-GB) torch build while resolving the rest.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

install-serving: $(SERVE_STAMP)

install: $(STAMP)

$(EMULATOR):
	npm install --prefix .emulator --no-audit --no-fund @firestore-emulator/server@$(EMULATOR_VERSION)

run: $(SERVE_STAMP)
	$(PY) -m bot

# The browser test (tests/bot/test_web_browser.py) drives Debian's chromium through Playwright;
# fonts-nanum draws Korean, fonts-noto-color-emoji the emoji. Installed once, with apt-get
# (through sudo when not root, without recommended packages), never with `playwright install`.
BROWSER_PACKAGES := chromium fonts-nanum fonts-noto-color-emoji
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

browser:
	@command -v chromium >/dev/null && fc-list | grep -qi nanum || \
		{ $(SUDO) apt-get update -q && \
		  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES); }

test: $(STAMP) $(EMULATOR) browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# docs/performance.md: what they measure and one run's figures.
bench: $(STAMP)
	$(PY) bench/inference.py
	$(PY) bench/load.py

bench-agreement: $(STAMP)
	$(PY) bench/agreement.py

bench-cli: $(STAMP)
	$(PY) bench/cli_latency.py

# Mutation testing of the triage decisions (not in CI; minutes): [tool.mutmut] in pyproject.toml
# says which modules and tests. Survivors, timeouts and mutants no test reaches are listed last.
mutate: $(STAMP)
	$(PY) -m pip install --quiet 'mutmut>=3.3,<4'
	rm -rf mutants
	SKINCARE_TEST_DATASET=$(abspath ../shared/datasets/skin-photos) $(VENV)/bin/mutmut run --max-children 2 || true
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .emulator mutants
