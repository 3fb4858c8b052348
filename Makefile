# tongbao: two commands set up a fresh machine.
#   make demo   - venv, release build of the extension, then the main job (tongbao simulate)
#   make test   - the same setup, then fmt/clippy/ruff/mypy/stubtest, cargo test, fuzz, pytest
# Needs: Python >= 3.11 with venv, Rust (cargo), and the Debian packages named in
# SYSTEM_PACKAGES (installed by `make system-deps` when missing and run as root).

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(BIN):$(PATH)
SYSTEM_PACKAGES := openssl redis-server
FUZZ_CASES ?= 20000
DEMO_ARGS ?= --preset chongqing-2022 --scale 0.1

.PHONY: demo test test-slow build lint fuzz bench system-deps clean

demo: build
	tongbao simulate $(DEMO_ARGS)

test: lint
	cargo test --workspace -q
	$(MAKE) fuzz
	python -m pytest -q -m "not slow"

test-slow: build
	python -m pytest -q -m slow

system-deps:
	@missing=""; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "missing Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; \
		fi; \
	fi

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tongbao needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -U pip

$(VENV)/.deps: pyproject.toml $(VENV)/bin/python
	python -m pip install -q --group dev
	touch $@

build: $(VENV)/.deps system-deps
	rm -f python/tongbao/_core*.so
	maturin develop --release -q

lint: build
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -q -- -D warnings
	ruff check python tests bench
	ruff format --check python tests bench
	mypy
	python -m mypy.stubtest tongbao._core --allowlist .stubtest-allowlist

fuzz:
	TONGBAO_FUZZ_CASES=$(FUZZ_CASES) cargo test -q -p tongbao-core --release --test fuzz_decode

bench: build
	python -m pytest bench -q --benchmark-enable -p no:cacheprovider

clean:
	rm -rf $(VENV) target python/tongbao/_core*.so
