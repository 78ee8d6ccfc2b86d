# The two commands of the README:  `make demo`  and  `make test`.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint check-python test-deps schema bench clean

demo: $(STAMP)
	$(BIN)/bridge demo

test: $(STAMP) test-deps lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Not part of the test suite: event latency through the 2N long poll (see docs/performance.md).
bench: $(STAMP) test-deps
	$(BIN)/python bench/latency.py --driver 2n --events 1000 --rate 50

schema: $(STAMP)
	$(BIN)/bridge schema --out docs/schema

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bridge needs Python >= 3.11: make PYTHON=python3.11 ...")'

$(STAMP): pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Real parts the tests use: mosquitto (the fixtures start brokers on free ports) and its
# clients (mosquitto_sub/mosquitto_pub, as the docs use them), promtool
# (Prometheus' metrics linter, Debian package prometheus), systemd-analyze (unit check) and
# openssl (makes the test certificate of the device TLS tests).
TEST_PACKAGES := $(shell command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || echo mosquitto) \
	$(shell command -v mosquitto_sub >/dev/null 2>&1 || echo mosquitto-clients) \
	$(shell command -v promtool >/dev/null 2>&1 || echo prometheus) \
	$(shell command -v systemd-analyze >/dev/null 2>&1 || echo systemd) \
	$(shell command -v openssl >/dev/null 2>&1 || echo openssl)

test-deps:
	@if [ -n "$(strip $(TEST_PACKAGES))" ]; then \
		echo "installing Debian packages: $(strip $(TEST_PACKAGES))"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES) >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
