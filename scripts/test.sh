#!/usr/bin/env bash
# Install, make sure PostgreSQL and Redis run, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
scripts/browser.sh
exec .venv/bin/python -m pytest "$@"
