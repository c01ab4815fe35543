#!/usr/bin/env bash
# A database refresh onto a vps server: a masked copy of the source stack's database, beside the current one.
# `pull` runs on the machine running pulumi (local.Command). It reads the mask salt (first line) and the
# stack's SSH private key (the rest) on stdin, writes the key to a 0600 file and pins both host keys in a
# private known_hosts, then streams `pg_dump -Fc` run on the source server (PostgreSQL listens on localhost
# only there) into this script's `restore` on the target, masks, and publishes the copy to the app.
# Without TARGET_HOST, ON_TARGET runs on this machine (the local target passes its local-refresh.sh).
# The other actions run as root on the target (ON_TARGET is the command line that runs them there):
#   status   prints `complete` when the copy exists and was published, else `missing` or `partial`;
#   restore  drops a half-done copy, creates the copy owned by postgres with CONNECT revoked from PUBLIC,
#            and restores the dump from stdin with the app's role as owner of its objects;
#   mask     runs the salt + masking SQL from stdin in one transaction;
#   publish  makes the app the database's owner (so it may connect, and owns `public` through
#            pg_database_owner, as on the base database) and marks the copy complete.
# Nothing here touches the database the site uses: the release switches to the copy afterwards.
set -euo pipefail
# shellcheck source=vps-lib.sh
. "$(dirname "$0")/vps-lib.sh"

COMPLETE="siteline refresh complete"

psql_admin() { cd / && runuser -u postgres -- psql -p "$DB_PORT" -X -q -v ON_ERROR_STOP=1 "$@"; }

server_params() { : "${DB_PORT:?}" "${COPY_DB:?}" "${APP_USER:?}"; require_root; }

status() {
  server_params
  psql_admin -At -d postgres -v copy="$COPY_DB" <<'SQL'
SELECT CASE WHEN shobj_description(oid, 'pg_database') = 'siteline refresh complete' THEN 'complete' ELSE 'partial' END
  FROM pg_database WHERE datname = :'copy'
UNION ALL SELECT 'missing' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'copy');
SQL
}

restore() {
  server_params
  step "creating $COPY_DB (owned by postgres, no CONNECT for PUBLIC until it is masked)"
  psql_admin -d postgres -v copy="$COPY_DB" <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS :"copy" WITH (FORCE);
CREATE DATABASE :"copy" OWNER postgres;
REVOKE CONNECT, TEMPORARY ON DATABASE :"copy" FROM PUBLIC;
SQL
  # The restore creates the app's objects as the app (--role); public is postgres's until publish.
  psql_admin -d "$COPY_DB" -v app="$APP_USER" <<<'GRANT USAGE, CREATE ON SCHEMA public TO :"app";'
  step "restoring the dump into $COPY_DB"
  cd / && runuser -u postgres -- pg_restore -p "$DB_PORT" --no-owner --no-acl --role="$APP_USER" \
    --exit-on-error -d "$COPY_DB"
}

mask() {
  server_params
  step "masking $COPY_DB"
  psql_admin -d "$COPY_DB" --single-transaction
}

publish() {
  server_params
  step "handing $COPY_DB to $APP_USER"
  psql_admin -d postgres -v copy="$COPY_DB" -v app="$APP_USER" -v done="$COMPLETE" <<'SQL'
ALTER DATABASE :"copy" OWNER TO :"app";
COMMENT ON DATABASE :"copy" IS :'done';
SQL
}

# known_host HOST PORT KEY: an OpenSSH known_hosts line for HOST:PORT.
known_host() { if [ "$2" = 22 ]; then echo "$1 $3"; else echo "[$1]:$2 $3"; fi; }

pull() {
  : "${SOURCE_HOST:?}" "${SOURCE_PORT:?}" "${SOURCE_USER:?}" "${SOURCE_HOST_KEY:?}" "${SOURCE_DB:?}"
  : "${SOURCE_DB_PORT:?}" "${ON_TARGET:?}" "${COPY_DB:?}" "${MASK_SQL:?}" "${TARGET_HOST:=}"
  local dir salt
  dir=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the path is local to this function
  trap "rm -rf '$dir'" EXIT
  chmod 700 "$dir"
  IFS= read -r salt
  [[ $salt =~ ^[A-Za-z0-9]+$ ]] || fail "no mask salt on stdin"
  (umask 077 && cat >"$dir/key")
  [ -s "$dir/key" ] || fail "no SSH private key on stdin"
  known_host "$SOURCE_HOST" "$SOURCE_PORT" "$SOURCE_HOST_KEY" >"$dir/known_hosts"
  local -a ssh=(ssh -F none -i "$dir/key" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes
                -o UserKnownHostsFile="$dir/known_hosts" -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=20)
  if [ -n "$TARGET_HOST" ]; then
    : "${TARGET_PORT:?}" "${TARGET_USER:?}" "${TARGET_HOST_KEY:?}"
    known_host "$TARGET_HOST" "$TARGET_PORT" "$TARGET_HOST_KEY" >>"$dir/known_hosts"
    on_target() { "${ssh[@]}" -p "$TARGET_PORT" "$TARGET_USER@$TARGET_HOST" "$ON_TARGET $1"; }
  else
    # No target host: the copy goes into a cluster on this machine (the local target's local-refresh.sh).
    on_target() { bash -c "$ON_TARGET $1"; }
  fi

  local state
  state=$(on_target status </dev/null)
  if [ "$state" = complete ]; then
    step "$COPY_DB is already a complete masked copy; nothing to do"
    return
  fi
  step "$COPY_DB is $state: copying $SOURCE_DB from $SOURCE_USER@$SOURCE_HOST:$SOURCE_PORT"
  local dump
  dump="pg_dump -p $SOURCE_DB_PORT -Fc $(printf %q "$SOURCE_DB")"
  # As root on the source runuser needs no sudo; as another user sudo -n must give postgres.
  local remote_dump="cd / && if [ \"\$(id -u)\" = 0 ]; then runuser -u postgres -- $dump; else sudo -n -u postgres $dump; fi"
  "${ssh[@]}" -p "$SOURCE_PORT" "$SOURCE_USER@$SOURCE_HOST" "$remote_dump" </dev/null | on_target restore ||
    fail "copying $SOURCE_DB into $COPY_DB failed; the site keeps its current database"
  # SET, not SELECT set_config(...): psql would print the value a SELECT returns, i.e. the salt.
  { printf "SET siteline.mask_salt = '%s';\n" "$salt"; printf '%s\n' "$MASK_SQL"; } |
    on_target mask || fail "masking $COPY_DB failed; it stays unreadable to the site, which keeps its current database"
  on_target publish </dev/null
  step "$COPY_DB is a masked copy of $SOURCE_DB"
}

case "${1:-}" in
  pull) pull ;;
  status) status ;;
  restore) restore ;;
  mask) mask ;;
  publish) publish ;;
  *) fail "usage: vps-refresh.sh pull|status|restore|mask|publish" ;;
esac
