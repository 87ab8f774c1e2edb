# brushwork — `make serve` installs everything and starts the daemon; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: install serve test test-slow editors test-editors clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Start the daemon (local IPC socket; see `brushwork serve --help`). Extra flags: make serve ARGS="--tcp"
serve: install
	$(BIN)/brushwork serve $(ARGS)

## The default test suite (minutes, no editors, no long training).
test: install
	$(BIN)/python -m pytest -q $(ARGS)

## Slow tests: large images, real training runs, torchrun.
test-slow: install
	$(BIN)/python -m pytest -q -m slow $(ARGS)

## Install the real editors for the end-to-end tests (root): Krita 5 from Debian, GIMP 3 in a trixie chroot.
editors:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		krita python3-pyqt5 python3-zmq xvfb xauth debootstrap
	tools/gimp-chroot.sh

## End-to-end tests in real Krita (Xvfb) and real GIMP 3 (chroot); run `make editors` first.
test-editors: install
	BRUSHWORK_REQUIRE_EDITORS=1 $(BIN)/python -m pytest -q -m "krita or gimp" $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
