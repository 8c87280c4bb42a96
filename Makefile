# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
DEV_ENV := DEBUG=1

.PHONY: run test install install-dev migrate demo serve lint bench-redirect bench-credit bench-close bench-portal bench-insights clean

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(DEV_ENV) $(PY) manage.py migrate --noinput

demo: migrate
	$(DEV_ENV) $(PY) manage.py load_demo --base-url http://$(HOST):$(PORT)
	$(DEV_ENV) $(PY) manage.py insights_run

run: demo
	$(DEV_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

test: install-dev
	$(PY) -m pytest -q -n 2 --dist loadgroup

# ruff, a model change without its migration, and the import rule (.importlinter; CONTRIBUTING.md).
lint: install-dev
	$(VENV)/bin/ruff check .
	$(DEV_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports --no-cache

bench-redirect: install-dev
	$(PY) bench/redirect.py

bench-credit: install-dev
	$(PY) bench/credit.py

bench-close: install-dev
	$(PY) bench/close.py

bench-portal: install-dev
	$(PY) bench/portal.py

bench-insights: install-dev
	$(PY) bench/insights.py

# Mixed traffic at a steady rate for 10 minutes (SOAK_ARGS="--duration 120" for less); see bench/soak.py.
.PHONY: bench-soak
bench-soak: install-dev
	$(PY) bench/soak.py $(SOAK_ARGS)

# Every benchmark, then one table of figures and targets at the top of bench/README.md
# (BENCH_ARGS=--quick: the small variants, printed only). See bench/all.py.
.PHONY: bench
bench: install-dev
	$(PY) bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles
