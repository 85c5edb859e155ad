#!/usr/bin/env bash
# Install everything and run Pointpass on its embedded defaults: SQLite, jobs in-process,
# generated development certificates and a demo program.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

export POINTPASS_ENV="${POINTPASS_ENV:-development}"
port="${PORT:-8000}"
export POINTPASS_BASE_URL="${POINTPASS_BASE_URL:-http://127.0.0.1:$port}"
# In development the app writes stand-in certificates to instance/dev-certs on first start.
pointpass db upgrade
pointpass demo

echo
echo "Pointpass is running at http://127.0.0.1:$port/  (API docs: /api/docs; Ctrl-C stops it)"
# The same gunicorn settings as in production (README, Deployment): an access log with the
# card page and pass download tokens redacted.
exec gunicorn -c python:app.gunicorn_conf --bind "127.0.0.1:$port" --workers 1 --threads 8 \
    wsgi:app
