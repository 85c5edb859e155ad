#!/usr/bin/env bash
# Install, make sure PostgreSQL and Redis run, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
scripts/browser.sh
# Two processes (pytest-xdist), a file's tests in one of them (its browser and servers
# shared); POINTPASS_TEST_PROCESSES=0 runs them all in this one.
exec .venv/bin/python -m pytest -n "${POINTPASS_TEST_PROCESSES:-2}" --dist loadfile "$@"
