# brushwork — `make serve` installs everything and starts the daemon; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: install serve test test-slow editors test-editors test-gimp clean

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

## Install the real editors for the end-to-end tests (root): Krita 5.1 from Debian 12, and Debian chroots in
## /var/cache/brushwork with Krita 5.2 + GIMP 3.0 (trixie), Krita 5.3 + GIMP 3.2 (sid), Krita 6.0 (experimental).
## The three chroots build side by side (downloads and unpacking, not CPU, set their time).
CHROOTS := trixie sid experimental
editors:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		krita python3-pyqt5 python3-zmq xvfb xauth debootstrap util-linux
	$(MAKE) --no-print-directory --output-sync=target -j 3 $(addprefix chroot-,$(CHROOTS))

chroot-%:
	tools/editor-chroot.sh $*

## End-to-end tests in each real Krita (Xvfb; 5.1 here, 5.2/5.3/6.0 in the chroots) and GIMP 3; run `make editors` first.
## One pytest per Krita and one for GIMP, two at a time (EDITOR_JOBS; one per core: more at once
## slows the GUIs enough to race their undo steps); each prints its report when done.
KRITAS := 5.1 5.2 5.3 6.0
EDITOR_JOBS ?= 2
test-editors: install
	$(MAKE) --no-print-directory --output-sync=target -j $(EDITOR_JOBS) $(addprefix test-krita,$(KRITAS)) test-gimp

## TESTS="expression" narrows any editor suite by test name (pytest -k; a -k in ARGS would replace the version's).
test-krita%: install
	BRUSHWORK_REQUIRE_EDITORS=1 $(BIN)/python -m pytest -q -m krita -k "krita$*$(if $(TESTS), and ($(TESTS)))" tests/krita $(ARGS)

test-gimp: install
	BRUSHWORK_REQUIRE_EDITORS=1 $(BIN)/python -m pytest -q -m gimp $(if $(TESTS),-k "$(TESTS)") tests/gimp $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
