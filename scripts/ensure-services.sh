#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and NATS (127.0.0.1:4222) answer, starting them when
# they are installed but stopped. Fails with a message saying what to do when they are missing.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port 5432 || { echo "services: PostgreSQL is not reachable on 127.0.0.1:5432; install it (apt-get install postgresql) and start it" >&2; exit 1; }
fi
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -c "create database test" >/dev/null
fi

if ! port_open 4222; then
  if [ -x /usr/sbin/nats-server ]; then
    echo "services: starting NATS"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server
  fi
  wait_port 4222 || { echo "services: NATS is not reachable on 127.0.0.1:4222; install it (apt-get install nats-server) and start it" >&2; exit 1; }
fi
echo "services: PostgreSQL and NATS are up"
