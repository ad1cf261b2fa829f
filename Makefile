# Two commands for a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# Both run `make setup` first, which is idempotent.

SYSTEM_PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEB_PACKAGES := python3 python3-venv python3-pip python3-gi python3-gst-1.0 \
	gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp \
	mosquitto mosquitto-clients prometheus systemd

.PHONY: setup system-packages venv demo test lint bench clean

setup: system-packages venv

system-packages:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	@test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: setup
	$(PY) tools/make_demo_media.py
	$(VENV)/bin/appliance run -c pipelines/demo.yaml

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check appliance tests tools

bench: setup
	$(VENV)/bin/appliance bench

clean:
	rm -rf $(VENV) build *.egg-info
