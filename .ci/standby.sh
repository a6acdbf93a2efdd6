#!/usr/bin/env bash
# A hot standby of the local CI PostgreSQL server, for the replica tests.
#
#   .ci/standby.sh start [PORT]   set up replication on the primary (127.0.0.1:5432) if
#                                 missing, pg_basebackup -R into a new temporary directory,
#                                 start a standby on 127.0.0.1:PORT (default: the first free
#                                 port from 5433), wait until it takes read-only connections;
#                                 prints the directory, which holds the port in DIR/port
#   .ci/standby.sh ctl DIR stop|start   stop (fast) or start again the standby in DIR
#   .ci/standby.sh remove DIR     stop the standby in DIR (if running) and delete DIR
#
# Run as root (the server runs as user postgres) or as postgres.
set -eEuo pipefail

primary_port=5432
ver="$(ls /etc/postgresql | sort -V | tail -1)"
bin="/usr/lib/postgresql/$ver/bin"

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

psql_primary() { psql -h 127.0.0.1 -p "$primary_port" -U postgres -d postgres -tAc "$1"; }

ensure_primary() {
  local restart=0 hba
  # wal_level replica (the default) or logical; at least a few WAL senders.
  if [ "$(psql_primary 'SHOW wal_level')" = minimal ]; then
    psql_primary "ALTER SYSTEM SET wal_level = replica" >/dev/null; restart=1
  fi
  if [ "$(psql_primary 'SHOW max_wal_senders')" -lt 4 ]; then
    psql_primary "ALTER SYSTEM SET max_wal_senders = 10" >/dev/null; restart=1
  fi
  hba="$(psql_primary 'SHOW hba_file')"
  # First, so that no other replication line (scram-sha-256, say) matches
  # before it.
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+(all|postgres)[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    sed -i '1i host replication all 127.0.0.1/32 trust # eventsourcing CI standby (.ci/standby.sh)' "$hba"
    psql_primary "SELECT pg_reload_conf()" >/dev/null
  fi
  if [ "$restart" = 1 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p "$primary_port" -q && break; sleep 1; done
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local port="${1:-}" dir
  if [ -z "$port" ]; then
    for p in $(seq 5433 5452); do
      if port_free "$p"; then port="$p"; break; fi
    done
  fi
  if [ -z "$port" ] || ! port_free "$port"; then
    echo "standby.sh: port ${port:-5433-5452} is taken" >&2; exit 1
  fi
  ensure_primary
  dir="$(mktemp -d /tmp/eventsourcing-standby.XXXXXX)"
  chown postgres: "$dir" 2>/dev/null || true
  chmod 700 "$dir"
  trap 'remove "$dir"' ERR
  # -R writes standby.signal and primary_conninfo; -X stream copies the WAL
  # written meanwhile (through a temporary slot, none is left behind).
  as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
    -D "$dir/data" -R -X stream -c fast >&2
  # Debian keeps the configuration in /etc: give the standby its own.
  as_postgres sh -c "cat >'$dir/data/postgresql.conf'" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
hot_standby = on
hot_standby_feedback = on
max_connections = 100
shared_buffers = 128MB
logging_collector = off
CONF
  as_postgres sh -c "cat >'$dir/data/pg_hba.conf'" <<CONF
local all all trust
host all all 127.0.0.1/32 trust
CONF
  as_postgres touch "$dir/data/pg_ident.conf"
  echo "$port" >"$dir/port"
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >&2
  for _ in $(seq 1 60); do
    if [ "$(psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ]; then
      trap - ERR
      echo "$dir"; return 0
    fi
    sleep 1
  done
  echo "standby.sh: the standby on port $port did not take read-only connections; log:" >&2
  cat "$dir/log" >&2 || true
  remove "$dir"; exit 1
}

ctl() {
  local dir="$1" cmd="$2"
  case "$cmd" in
    stop) as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop ;;
    start) as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start ;;
    *) echo "standby.sh ctl: want stop or start, not $cmd" >&2; exit 2 ;;
  esac
}

remove() {
  local dir="$1"
  case "$dir" in /tmp/eventsourcing-standby.*) ;; *) echo "standby.sh: refusing to remove $dir" >&2; exit 2 ;; esac
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  ctl) shift; ctl "$@" ;;
  remove) shift; remove "$@" ;;
  *) echo "usage: $0 start [PORT] | ctl DIR stop|start | remove DIR" >&2; exit 2 ;;
esac
