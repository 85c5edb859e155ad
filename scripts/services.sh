#!/usr/bin/env bash
# Make sure PostgreSQL (5432) and Redis (6379) answer on 127.0.0.1; start them if not.
# Also installs nginx (not started: tests/test_scale_out.py runs its own in front of gunicorn).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq postgresql redis-server >/dev/null
  fi
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nginx >/dev/null
    # The package starts a default site on port 80; the tests need only the binary.
    { systemctl disable --now nginx || service nginx stop || nginx -s stop; } >/dev/null 2>&1 || true
  fi
fi

if ! pg_up; then
  echo "Starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
if ! redis_up; then
  echo "Starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

for _ in $(seq 1 30); do
  pg_up && redis_up && exit 0
  sleep 1
done
pg_up || echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2
redis_up || echo "Redis is not answering on 127.0.0.1:6379" >&2
exit 1
