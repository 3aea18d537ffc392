# brain — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BRAIN := $(VENV)/bin/brain
STAMP := $(VENV)/.installed-stamp
DB ?= duckdb:///data/brain.duckdb

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: browser postgis setup demo test sample bench bench-ingest bench-tiles bench-dashboard bench-postgis bench-export serve clean help

help:
	@echo "make demo   — set up, generate + ingest the sample district, create sample users, serve it (URLs printed)"
	@echo "make test   — set up and run the whole test suite"
	@echo "make bench  — benchmarks (bench/ingest.py, tiles.py, dashboard.py, postgis.py: the large sample end to end)"

# Idempotent and quick when nothing changed: reinstalls only when pyproject.toml is newer than the stamp.
setup: $(STAMP) browser postgis

# The PostGIS tests start a throwaway PostgreSQL 15 cluster; PostGIS comes from the Debian registry.
postgis:
	@test -f /usr/share/postgresql/15/extension/postgis.control || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15-postgis-3; }

# The dashboards' tests drive Debian's Chromium (never `playwright install`); a CJK font makes the
# screenshots readable. Installed from the Debian registry when missing (as root, or with passwordless sudo).
browser:
	@command -v chromium >/dev/null && fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-microhei; }

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@# Install DuckDB's spatial extension from its PyPI wheel (offline), and prove it loads.
	$(PY) -c "from brain.backend import DuckDBBackend; DuckDBBackend(':memory:').close(); print('duckdb spatial: ok')"
	@touch $(STAMP)

sample: setup
	$(BRAIN) sample --scale small --out data/sample

demo: sample
	$(BRAIN) ingest data/sample/manifest.yaml --db $(DB) --report-json data/report.json
	$(BRAIN) status --db $(DB)
	@echo
	@echo "The one map's database: data/brain.duckdb (DuckDB + spatial). Report: data/report.json"
	@echo "Quarantined rows, with reasons:  $(BRAIN) quarantine --db $(DB)"
	@echo "Read it as a user (server stopped): $(PY) -c \"import brain; s = brain.open('$(DB)', user='demo-community-staff'); print(s.layer('people').head())\""
	@echo
	$(BRAIN) users demo --db $(DB) --base-url http://$(HOST):$(PORT)
	@echo
	@echo "One map:    http://$(HOST):$(PORT)/  (open a link above to sign in)"
	@echo "Tiles:      http://$(HOST):$(PORT)/tiles/{layer}/{z}/{x}/{y}.mvt?token=TOKEN   (layers: /layers?token=TOKEN)"
	@echo "API docs:   http://$(HOST):$(PORT)/docs      Stop with Ctrl-C."
	$(BRAIN) serve --db $(DB) --host $(HOST) --port $(PORT)

serve: setup
	$(BRAIN) serve --db $(DB) --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -q

bench: bench-ingest bench-tiles bench-dashboard bench-postgis bench-export

bench-ingest: setup
	$(PY) bench/ingest.py

bench-export: setup
	$(PY) bench/export.py

bench-tiles: setup
	$(PY) bench/tiles.py

bench-dashboard: setup
	$(PY) bench/dashboard.py

# brain on PostGIS against TiPg (installed by the benchmark into bench/.cache/tipg-venv) on the same tables
bench-postgis: setup
	$(PY) bench/postgis.py

clean:
	rm -rf data/brain.duckdb data/brain.duckdb.wal data/report.json .pytest_cache
