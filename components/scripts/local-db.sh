#!/usr/bin/env bash
# The local target's private PostgreSQL cluster: `up` creates and starts it, `down` stops it.
# Reads the database password from stdin so it never appears on a command line.
set -euo pipefail
# shellcheck source=local-lib.sh
. "$(dirname "$0")/local-lib.sh"

: "${SITELINE_HOME:?}" "${DB_PORT:?}" "${DB_NAME:?}" "${DB_USER:?}" "${DB_VERSION:?}"
data="$SITELINE_HOME/db/data"
sockets="$SITELINE_HOME/db/run"
log="$SITELINE_HOME/db/postgres.log"

find_bin() {
  local dir="/usr/lib/postgresql/$DB_VERSION/bin"
  if [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null && initdb --version | grep -q " $DB_VERSION\."; then
    dirname "$(command -v initdb)"; return
  fi
  fail "PostgreSQL $DB_VERSION server binaries not found; install them (Debian/Ubuntu: apt-get install postgresql-$DB_VERSION) or set database.version to the version you have"
}

running() { [ -s "$data/postmaster.pid" ] && "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

up() {
  refuse_root
  local password
  IFS= read -r password || true
  [ -n "$password" ] || fail "no database password on stdin"
  bin=$(find_bin)
  mkdir -p "$SITELINE_HOME/db" "$sockets"
  chmod 700 "$SITELINE_HOME/db" "$sockets"

  if [ ! -s "$data/PG_VERSION" ]; then
    step "initdb: new PostgreSQL $DB_VERSION cluster in $data"
    rm -rf "$data.new"
    "$bin/initdb" -D "$data.new" -U "$DB_USER" --pwfile=<(printf '%s\n' "$password") \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
    mv "$data.new" "$data"
  fi
  if ! running; then
    step "starting PostgreSQL on 127.0.0.1:$DB_PORT"
    "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $DB_PORT -k $sockets -c unix_socket_permissions=0700" start >/dev/null
  fi
  # The password may have been rotated in config; set it every time (idempotent), via stdin.
  printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$DB_USER" "$password" |
    "$bin/psql" -h "$sockets" -p "$DB_PORT" -U "$DB_USER" -d postgres -q -v ON_ERROR_STOP=1 >/dev/null
  if [ -z "$("$bin/psql" -h "$sockets" -p "$DB_PORT" -U "$DB_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    step "creating database $DB_NAME"
    "$bin/createdb" -h "$sockets" -p "$DB_PORT" -U "$DB_USER" "$DB_NAME"
  fi
  step "database $DB_NAME ready"
}

down() {
  bin=$(find_bin)
  if running; then
    step "stopping PostgreSQL"
    "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
  if [ "${DB_RETAIN:-true}" = "false" ]; then
    step "removing the cluster (database.retainOnDestroy is false)"
    rm -rf "$SITELINE_HOME/db"
  else
    step "cluster kept in $data (database.retainOnDestroy)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) fail "usage: local-db.sh up|down" ;;
esac
