# The two set-up commands are `make run` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HTMX := webapp/static/vendor/htmx.min.js

.PHONY: install run test bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# htmx comes from its npm registry package at set-up time; it is never committed. package.json's `build`
# script puts it where the app serves it: the same two steps Heroku's Node.js buildpack runs (app.json).
$(HTMX): package.json package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm >/dev/null)
	npm ci --no-audit --no-fund --silent
	npm run build --silent

install: $(BIN)/.installed $(HTMX)

# The browser tests drive Debian's Chromium (never a downloaded browser).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

run: install
	$(BIN)/python scripts/run_dev.py

test: install /usr/bin/chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_pages.py

clean:
	rm -rf $(VENV) node_modules webapp/static/vendor
