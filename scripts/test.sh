#!/usr/bin/env bash
# Quick start, command 2: install everything the suite needs and run all of it:
# ruff, mypy --strict, the unit tests, the integration tests against a real moto server and
# a throwaway PostgreSQL with PgBouncer in front (started and stopped by scripts/services.py),
# and the Helm chart tests.
# Extra arguments go to pytest (e.g. `scripts/test.sh tests/unit -k claim`).
source "$(dirname "$0")/bootstrap.sh"
ensure_venv
pip_install -e '.[test,demo,bench,dashboard,otel]'
command -v npm >/dev/null || apt_install npm
# The dashboard's browser tests drive Debian's Chromium through Selenium: nothing is downloaded at run time.
{ command -v chromium && command -v chromedriver; } >/dev/null || apt_install chromium chromium-driver
bash scripts/install_helm.sh >/dev/null
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest"
exec .venv/bin/python scripts/services.py -- .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
