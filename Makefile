# The two commands a newcomer needs: `make run` (proxy on the shipped demo rules) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint bench clean

$(BIN)/socialguard: pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' || \
		{ echo "socialguard needs Python >= 3.12; run e.g. make $(MAKECMDGOALS) PY=python3.12"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/socialguard

# RUN_ARGS passes options on, e.g. make run RUN_ARGS='--listen 127.0.0.1:8081'.
run: install
	$(BIN)/socialguard run --rules rules/demo.yaml $(RUN_ARGS)

# curl is the one system tool the suite cannot do without (it drives the proxy); tests that need
# chromium, nft, dnsmasq, ip (root) or systemd-analyze skip and name the package to install.
test: install
	@command -v curl >/dev/null || { echo "make test needs curl (apt-get install curl)"; exit 1; }
	$(BIN)/pytest -n 2

lint: install
	$(BIN)/ruff check src tests bench addons
	$(BIN)/ruff format --check src tests bench addons
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var build *.egg-info
