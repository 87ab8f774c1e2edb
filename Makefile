# brushwork — `make serve` installs everything and starts the daemon; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: install serve test test-slow test-editors bench clean

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

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
