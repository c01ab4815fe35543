#!/usr/bin/env bash
# The local target's side of a database refresh, run on this machine by vps-refresh.sh `pull` (which dumps
# the source over SSH): status, restore, mask and publish the copy COPY_DB in the stack's own cluster, and
# `prune`, run by local-release.sh after a successful switch, drops the copies the site no longer uses.
# The cluster's only role is this user's `siteline` superuser, so "unreadable until masked" here means the
# site's DATABASE_URL names the copy only after `publish`; CONNECT is still revoked from PUBLIC meanwhile.
set -euo pipefail
# shellcheck source=local-lib.sh
. "$(dirname "$0")/local-lib.sh"

: "${SITELINE_HOME:?}" "${DB_PORT:?}" "${DB_VERSION:?}" "${DB_USER:=siteline}"
COMPLETE="siteline refresh complete"
bin="/usr/lib/postgresql/$DB_VERSION/bin"
[ -x "$bin/psql" ] || bin=$(dirname "$(command -v psql)")

psql_admin() { "$bin/psql" -h "$SITELINE_HOME/db/run" -p "$DB_PORT" -U "$DB_USER" -X -q -v ON_ERROR_STOP=1 "$@"; }

status() {
  psql_admin -At -d postgres -v copy="${COPY_DB:?}" -v done="$COMPLETE" <<'SQL'
SELECT CASE WHEN shobj_description(oid, 'pg_database') = :'done' THEN 'complete' ELSE 'partial' END
  FROM pg_database WHERE datname = :'copy'
UNION ALL SELECT 'missing' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'copy');
SQL
}

restore() {
  step "creating ${COPY_DB:?} in the local cluster"
  psql_admin -d postgres -v copy="$COPY_DB" <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS :"copy" WITH (FORCE);
CREATE DATABASE :"copy";
REVOKE CONNECT, TEMPORARY ON DATABASE :"copy" FROM PUBLIC;
SQL
  step "restoring the dump into $COPY_DB"
  "$bin/pg_restore" -h "$SITELINE_HOME/db/run" -p "$DB_PORT" -U "$DB_USER" --no-owner --no-acl --exit-on-error \
    -d "$COPY_DB"
}

mask() {
  step "masking ${COPY_DB:?}"
  psql_admin -d "$COPY_DB" --single-transaction
}

publish() {
  psql_admin -d postgres -v copy="${COPY_DB:?}" -v done="$COMPLETE" <<'SQL'
COMMENT ON DATABASE :"copy" IS :'done';
SQL
}

prune() {
  : "${DB_NAME:?}" "${DB_CURRENT:?}"
  local copy
  while IFS= read -r copy; do
    if [ -z "$copy" ] || [ "$copy" = "$DB_CURRENT" ] || [ "$copy" = "$DB_NAME" ]; then continue; fi
    step "dropping the previous database copy $copy"
    psql_admin -d postgres -v copy="$copy" <<<'DROP DATABASE IF EXISTS :"copy" WITH (FORCE);' ||
      step "warning: could not drop $copy"
  done < <(psql_admin -At -d postgres -v prefix="${DB_NAME}_r" \
             <<<"SELECT datname FROM pg_database WHERE left(datname, length(:'prefix')) = :'prefix'")
}

case "${1:-}" in
  status) status ;;
  restore) restore ;;
  mask) mask ;;
  publish) publish ;;
  prune) prune ;;
  *) fail "usage: local-refresh.sh status|restore|mask|publish|prune" ;;
esac
