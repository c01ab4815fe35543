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
stack=$(basename "$SITELINE_HOME") # the local target keeps each stack in <home>/<stack>

find_bin() {
  local dir="/usr/lib/postgresql/$DB_VERSION/bin" installed=() path major
  if [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null && initdb --version | grep -q " $DB_VERSION\."; then
    dirname "$(command -v initdb)"; return
  fi
  # No silent fallback to another major: a cluster initialised by one major cannot be run by another.
  for path in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$path" ] && installed+=("$(basename "$(dirname "$(dirname "$path")")")")
  done
  if command -v initdb >/dev/null; then
    major=$(initdb --version | sed -n 's/^[^0-9]*\([0-9][0-9]*\).*/\1/p')
    [ -z "$major" ] || installed+=("$major")
  fi
  if [ ${#installed[@]} -eq 0 ]; then
    fail "PostgreSQL $DB_VERSION server binaries not found and no other version is installed; install them (Debian/Ubuntu: apt-get install postgresql-$DB_VERSION)"
  fi
  mapfile -t installed < <(printf '%s\n' "${installed[@]}" | sort -un)
  fail "PostgreSQL $DB_VERSION server binaries not found; installed: ${installed[*]}. Use an installed major: pulumi config set --path siteline:database.version ${installed[-1]} -s $stack (or install postgresql-$DB_VERSION)"
}

running() { [ -s "$data/postmaster.pid" ] && "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; }

# The port a running cluster listens on: PostgreSQL records it as line 4 of postmaster.pid.
serving_port() { sed -n 4p "$data/postmaster.pid" 2>/dev/null; }

# pg_ctl hands -o to /bin/sh: the socket dir goes in single quotes (a quote inside it escaped) so a home
# with spaces works.
server_options() {
  local quoted=${sockets//\'/\'\\\'\'}
  echo "-c listen_addresses=127.0.0.1 -p $DB_PORT -k '$quoted' -c unix_socket_permissions=0700"
}

up() {
  refuse_root
  local password serving=""
  IFS= read -r password || true
  [ -n "$password" ] || fail "no database password on stdin"
  bin=$(find_bin)
  mkdir -p "$SITELINE_HOME/db" "$sockets"
  chmod 700 "$SITELINE_HOME" "$SITELINE_HOME/db" "$sockets"
  if [ -s "$data/PG_VERSION" ] && [ "$(cat "$data/PG_VERSION")" != "$DB_VERSION" ]; then
    fail "the cluster in $data is PostgreSQL $(cat "$data/PG_VERSION"), database.version is $DB_VERSION; set it back (pulumi config set --path siteline:database.version $(cat "$data/PG_VERSION") -s $stack) or dump, destroy and recreate the cluster"
  fi

  if running; then serving=$(serving_port); fi
  # Our own cluster on DB_PORT is fine; anything else there is not ours, refused before we touch anything.
  [ "$serving" = "$DB_PORT" ] || refuse_taken_port "$DB_PORT" hosting.local.dbPort

  if [ ! -s "$data/PG_VERSION" ]; then
    step "initdb: new PostgreSQL $DB_VERSION cluster in $data"
    rm -rf "$data.new"
    "$bin/initdb" -D "$data.new" -U "$DB_USER" --pwfile=<(printf '%s\n' "$password") \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
    mv "$data.new" "$data"
  fi
  if [ -z "$serving" ]; then
    step "starting PostgreSQL on 127.0.0.1:$DB_PORT"
    "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$(server_options)" start >/dev/null
  elif [ "$serving" != "$DB_PORT" ]; then
    step "restarting PostgreSQL to move it from 127.0.0.1:$serving to 127.0.0.1:$DB_PORT"
    "$bin/pg_ctl" -D "$data" -l "$log" -m fast -w -t 60 -o "$(server_options)" restart >/dev/null
  fi
  # The password may have been rotated in config; set it every time (idempotent), via stdin.
  printf "ALTER ROLE \"%s\" PASSWORD '%s';\n" "$DB_USER" "$password" |
    "$bin/psql" -h "$sockets" -p "$DB_PORT" -U "$DB_USER" -d postgres -q -v ON_ERROR_STOP=1 >/dev/null
  if [ -z "$("$bin/psql" -h "$sockets" -p "$DB_PORT" -U "$DB_USER" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" ]; then
    step "creating database $DB_NAME"
    "$bin/createdb" -h "$sockets" -p "$DB_PORT" -U "$DB_USER" "$DB_NAME"
  fi
  step "database $DB_NAME ready on 127.0.0.1:$DB_PORT"
}

down() {
  local pid="" i
  if [ -s "$data/postmaster.pid" ]; then pid=$(head -n 1 "$data/postmaster.pid"); fi
  if [[ $pid =~ ^[1-9][0-9]*$ ]] && kill -0 "$pid" 2>/dev/null; then
    step "stopping PostgreSQL"
    if bin=$(find_bin 2>/dev/null); then
      "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    elif [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = postgres ]; then
      # The binaries are gone (uninstalled, or another version configured): SIGINT is a fast shutdown.
      kill -INT "$pid" 2>/dev/null || true
      for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then fail "PostgreSQL (pid $pid) did not stop within 60 s"; fi
    fi
  else
    step "PostgreSQL is not running"
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
