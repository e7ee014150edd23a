# Two set-up commands for a fresh machine (see README.md):
#   make run    the daemon on the quickstart manifest, with an embedded local Caterva2 server
#   make test   lint and the whole test suite against a real local Caterva2 server
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PLUGINS = $(wildcard plugins/*/pyproject.toml)
# The seed-era Caterva2 2025.8.7 server, which the client and the daemon are also tested
# against. It gets an environment of its own: it pins none of its dependencies, and
# blosc2 3.11.1 is the release that runs all it needs (docs/client.md, "Server versions").
C2_2025 ?= .venv-c2-2025

.PHONY: run test lint chromium bench bench-profile caterva2-2025 clean

$(BIN)/.installed: pyproject.toml $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(foreach p,$(PLUGINS),-e ./$(dir $(p)))
	touch $@

$(C2_2025)/bin/.installed:
	$(PYTHON) -m venv $(C2_2025)
	$(C2_2025)/bin/python -m pip install --quiet --upgrade pip
	$(C2_2025)/bin/python -m pip install --quiet 'caterva2[services]==2025.8.7' 'blosc2==3.11.1'
	touch $@

caterva2-2025: $(C2_2025)/bin/.installed

QUICKSTART = examples/quickstart-data

# The simulated instrument writes into the watched folder while the daemon runs;
# Ctrl-C stops both.
run: $(BIN)/.installed
	mkdir -p $(QUICKSTART)/acquisition
	$(BIN)/python examples/instrument.py $(QUICKSTART)/acquisition > $(QUICKSTART)/instrument.log 2>&1 & \
	  trap "kill $$! 2>/dev/null" EXIT INT TERM; \
	  $(BIN)/cat2sync run examples/configs/quickstart.toml

lint: $(BIN)/.installed
	$(BIN)/ruff check cat2sync tests plugins benchmarks examples conftest.py
	$(BIN)/ruff format --check cat2sync tests plugins benchmarks examples conftest.py
	$(BIN)/mypy cat2sync

# The status page's test drives Debian's headless Chromium: installed here when missing, so
# that `make test` needs nothing else on a fresh machine (CI runs exactly `make test`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (for the status page's browser test)"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Naming the 2025 server's environment makes its tests run (they skip without it).
test: lint chromium $(C2_2025)/bin/.installed
	CAT2SYNC_CATERVA2_2025_BIN=$(abspath $(C2_2025))/bin $(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet 'caterva2[clients]>=2026.9.2,<2027'
	$(BIN)/python benchmarks/run.py

# Where the server's CPU goes in the server-bound cases (py-spy; stacks in bench-profile/).
bench-profile: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet 'caterva2[clients]>=2026.9.2,<2027' py-spy
	$(BIN)/python benchmarks/run.py --repeat 1 --profile-server bench-profile \
	  --cases mirror-small-cold mirror-small-resync server-floor

clean:
	rm -rf $(VENV) $(C2_2025)
