# The two commands of the README:  `make demo`  and  `make test`.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell sha1sum pyproject.toml | cut -c1-12)
STAMP  := $(VENV)/.installed-$(HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(HASH)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: demo demo-deps test lint check-python test-deps schema bench clean

demo: $(STAMP) demo-deps
	$(BIN)/bridge demo

test: $(DEV_STAMP) test-deps lint
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Not part of the test suite: event latency through the 2N long poll (see docs/performance.md).
bench: $(DEV_STAMP) test-deps
	$(BIN)/python bench/latency.py --driver 2n --events 1000 --rate 50

schema: $(STAMP)
	$(BIN)/bridge schema --out docs/schema

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bridge needs Python >= 3.11: make PYTHON=python3.11 ...")'

# The venv of the demo holds the bridge and its dependencies only; the tests add the development
# tool chain to it (pytest, ruff, mypy, ...), with their own stamp.
$(STAMP): pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP) -e '.[dev]'
	touch $(DEV_STAMP)

# Installs the Debian packages $(1), if any are missing, with apt-get (with sudo when not root).
define apt_install
	@if [ -n "$(strip $(1))" ]; then \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "no apt-get here: install $(strip $(1)) with your package manager" >&2; exit 1; \
		fi; \
		echo "installing Debian packages: $(strip $(1))"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
	fi
endef

# What the demo runs for real: mosquitto (its broker; Debian puts it in /usr/sbin) and its
# clients (mosquitto_sub, the command the demo's first line prints).
DEMO_PACKAGES := $(shell command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || echo mosquitto) \
	$(shell command -v mosquitto_sub >/dev/null 2>&1 || echo mosquitto-clients)

demo-deps:
	$(call apt_install,$(DEMO_PACKAGES))

# Real parts the tests use: mosquitto (the fixtures start brokers on free ports) and its
# clients (mosquitto_sub/mosquitto_pub, as the docs use them), promtool
# (Prometheus' metrics linter, Debian package prometheus), systemd-analyze (unit check),
# openssl (makes the test certificate of the device TLS tests), and for the container test
# (tests/integration/test_container.py) mmdebstrap, which makes the image's Debian base, and
# buildah, which builds and runs the image (chroot isolation: no OCI runtime needed), and
# node/npm (the Node-RED tests and bench/sidebyside.py install Node-RED 4 from npm into
# ~/.cache/bridge-tests; Debian 12's nodejs 18 is enough).
TEST_PACKAGES := $(shell command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || echo mosquitto) \
	$(shell command -v mosquitto_sub >/dev/null 2>&1 || echo mosquitto-clients) \
	$(shell command -v promtool >/dev/null 2>&1 || echo prometheus) \
	$(shell command -v systemd-analyze >/dev/null 2>&1 || echo systemd) \
	$(shell command -v openssl >/dev/null 2>&1 || echo openssl) \
	$(shell command -v mmdebstrap >/dev/null 2>&1 || echo mmdebstrap) \
	$(shell command -v buildah >/dev/null 2>&1 || echo buildah) \
	$(shell command -v npm >/dev/null 2>&1 || echo nodejs npm)

test-deps:
	$(call apt_install,$(TEST_PACKAGES))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
