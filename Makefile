# bulkops developer commands. Only Python 3.11+ is assumed; everything else lands in .venv.
#
#   make run     .venv, migrate, demo data + admin user, RQ worker + web server on 127.0.0.1:8000
#   make test    .venv, the whole test suite (PYTEST_ARGS="-k bulk -x" passes options to pytest)
#   make lint    ruff check + ruff format --check + mypy bulkops
#   make format  ruff format + ruff check --fix
#
# DATABASE_URL and REDIS_URL pick the services (defaults: SQLite db.sqlite3, redis://127.0.0.1:6379/0).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install, so pip runs again only when pyproject.toml changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv run test lint format

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
		$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
			echo "bulkops needs Python 3.11 or newer; '$(PYTHON)' is not. Try: make $(MAKECMDGOALS) PYTHON=python3.11" >&2; \
			exit 1; }; \
		echo "Creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: venv
	$(BIN)/python scripts/run.py

# pytest exits 5 when it collected no tests; a suite that silently ran nothing is a failure.
test: venv
	@$(BIN)/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests; check testpaths and PYTEST_ARGS." >&2; fi; \
	exit $$status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bulkops

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
