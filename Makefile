# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .make

.PHONY: demo test install install-test lint bench clean

$(STAMP)/install: pyproject.toml
	$(PIP) install -q -e .
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/install-test: pyproject.toml scripts/install-system.sh
	bash scripts/install-system.sh
	$(PIP) install -q -e ".[test]" ruff
	@mkdir -p $(STAMP) && touch $@

install: $(STAMP)/install
install-test: $(STAMP)/install-test

## Build the embedded Berry Creek sample (if absent) and run the catalog entry -> GIF.
demo: install
	$(PYTHON) -m s2intake.cli demo

## Install everything the tests need (apt packages included) and run them.
test: install-test
	$(PYTHON) -m pytest -q

lint:
	ruff check s2intake tests bench

## Benchmarks (not tests): see bench/README.md
bench: install-test
	$(PIP) install -q -e ".[bench]"
	$(PYTHON) -m bench.run

clean:
	rm -rf $(STAMP) .pytest_cache build *.egg-info
