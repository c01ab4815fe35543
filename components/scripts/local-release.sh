#!/usr/bin/env bash
# The local target's release: verify, unpack, migrate, start, health-check, then make it current.
# `deploy` reads the site's env file on stdin (it holds secrets: never on a command line, never printed).
# Anything failing before the switch leaves the previous release serving.
set -euo pipefail
# shellcheck source=local-lib.sh
. "$(dirname "$0")/local-lib.sh"

: "${SITELINE_HOME:?}" "${SITELINE_BIN:?}" "${RELEASE_VERSION:?}" "${RELEASE_PACKAGE:?}" "${RELEASE_SHA256:?}"
: "${SITE_PORT:?}" "${SITE_START:?}" "${SITE_MIGRATE:?}" "${HEALTH_PATH:?}" "${HEALTH_TIMEOUT:=60}"
PATH="$SITELINE_BIN:$PATH"
releases="$SITELINE_HOME/releases"
shared="$SITELINE_HOME/shared"
pidfile="$SITELINE_HOME/site.pid"
portfile="$SITELINE_HOME/site.port"
startfile="$SITELINE_HOME/site.start"
log="$SITELINE_HOME/site.log"
target="$releases/$RELEASE_VERSION"
health_url="http://127.0.0.1:$SITE_PORT$HEALTH_PATH"

# start_site DIR ENVFILE PORT START: run START from DIR with ENVFILE loaded, detached, in a process group of
# its own (setsid) so stop_pid stops all of it. Records the port and command, which are not in ENVFILE.
start_site() {
  # shellcheck disable=SC2016 # the inner script expands its own positional arguments
  setsid bash -c 'echo $$ >"$1"; cd "$2"; set -a; . "$3"; set +a; export PORT="$4"; exec bash -c "$5"' \
    _ "$pidfile" "$1" "$2" "$3" "$4" </dev/null >>"$log" 2>&1 &
  echo "$3" >"$portfile"
  printf '%s\n' "$4" >"$startfile"
  for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
}

# put_back PREVIOUS PORT START: after a failed switch, start the release that was serving again, as it was.
put_back() {
  local previous=$1 port=$2 start=$3
  if [ -n "$previous" ] && [ -d "$previous" ] && [ -f "$shared/app.env" ]; then
    step "restarting ${previous##*/} on 127.0.0.1:$port"
    start_site "$previous" "$shared/app.env" "$port" "$start"
    healthy "http://127.0.0.1:$port$HEALTH_PATH" "${previous##*/}" "$HEALTH_TIMEOUT" ||
      step "warning: ${previous##*/} did not come back healthy"
  fi
}

fetch_package() {
  local source=$RELEASE_PACKAGE
  mkdir -p "$SITELINE_HOME/packages"
  local copy="$SITELINE_HOME/packages/$RELEASE_SHA256.zip"
  if [ ! -s "$copy" ]; then
    if [[ $source == https://* ]]; then
      step "downloading $source" >&2 # stdout is the path this function answers with
      python3 -c 'import shutil, sys, urllib.request; shutil.copyfileobj(urllib.request.urlopen(sys.argv[1], timeout=60), open(sys.argv[2], "wb"))' \
        "$source" "$copy.part"
    else
      [ -f "$source" ] || fail "package $source does not exist"
      cp "$source" "$copy.part"
    fi
    mv "$copy.part" "$copy"
  fi
  local actual
  actual=$(sha256sum "$copy" | cut -d' ' -f1)
  if [ "$actual" != "$RELEASE_SHA256" ]; then
    rm -f "$copy"
    fail "package $source has sha256 $actual, expected $RELEASE_SHA256; nothing changed"
  fi
  echo "$copy"
}

deploy() {
  refuse_root
  mkdir -p "$releases" "$shared"
  chmod 700 "$SITELINE_HOME" "$shared"
  env_new="$shared/app.env.new"
  # Whatever way deploy ends, no half-made env file or release directory stays behind.
  trap 'rm -rf "$env_new" "$target.new"' EXIT
  cat >"$env_new"

  local previous previous_port previous_start ours=false
  previous=$(readlink "$SITELINE_HOME/current" 2>/dev/null || true)
  previous_port=$(cat "$portfile" 2>/dev/null || echo "$SITE_PORT")
  previous_start=$(cat "$startfile" 2>/dev/null || printf '%s' "$SITE_START")
  if pid_alive "$pidfile" && [ "$previous_port" = "$SITE_PORT" ]; then ours=true; fi

  if [ "$previous" = "$target" ] && $ours && [ "$previous_start" = "$SITE_START" ] &&
     [ "$(cat "$target/.siteline-sha256" 2>/dev/null)" = "$RELEASE_SHA256" ] &&
     cmp -s "$env_new" "$shared/app.env" && healthy "$health_url" "$RELEASE_VERSION" 2; then
    step "release $RELEASE_VERSION is already serving with this configuration; nothing to do"
    return
  fi

  # Refusals first, so a refused release changes nothing at all.
  if [ "$previous" = "$target" ] && [ "$(cat "$target/.siteline-sha256" 2>/dev/null)" != "$RELEASE_SHA256" ]; then
    fail "release $RELEASE_VERSION is serving with different contents ($target); give the new package a new version"
  fi
  # Our own site on SITE_PORT is stopped for the switch; anything else there is not ours.
  $ours || refuse_taken_port "$SITE_PORT" site.port

  step "verifying package sha256"
  local package
  package=$(fetch_package)

  if [ "$(cat "$target/.siteline-sha256" 2>/dev/null)" != "$RELEASE_SHA256" ]; then
    step "unpacking release $RELEASE_VERSION"
    rm -rf "$target.new"
    mkdir -p "$target.new"
    python3 -m zipfile -e "$package" "$target.new"
    echo "$RELEASE_SHA256" >"$target.new/.siteline-sha256"
    rm -rf "$target"
    mv "$target.new" "$target"
  fi

  step "running migrations"
  # shellcheck source=/dev/null
  if ! (cd "$target" && set -a && . "$env_new" && set +a && bash -c "$SITE_MIGRATE"); then
    fail "migrations of $RELEASE_VERSION failed; the previous release keeps serving"
  fi

  # One port locally, so the switch is stop-then-start; a failed start puts the old release back.
  if pid_alive "$pidfile"; then
    step "stopping ${previous##*/}"
    stop_pid "$pidfile" 20
  fi
  if port_in_use "$SITE_PORT"; then
    put_back "$previous" "$previous_port" "$previous_start"
    fail "port $SITE_PORT on 127.0.0.1 is still taken after stopping the site; choose a free port: pulumi config set --path siteline:site.port <port>"
  fi
  step "starting $RELEASE_VERSION on 127.0.0.1:$SITE_PORT"
  start_site "$target" "$env_new" "$SITE_PORT" "$SITE_START"
  # Our process group must still be alive: a health answer from anything else does not count.
  if ! healthy "$health_url" "$RELEASE_VERSION" "$HEALTH_TIMEOUT" || ! pid_alive "$pidfile"; then
    stop_pid "$pidfile" 10
    step "health check failed"
    put_back "$previous" "$previous_port" "$previous_start"
    fail "release $RELEASE_VERSION failed its health check ($health_url); see $log"
  fi

  mv "$env_new" "$shared/app.env"
  ln -sfn "$target" "$SITELINE_HOME/current.new"
  mv -T "$SITELINE_HOME/current.new" "$SITELINE_HOME/current"
  step "release $RELEASE_VERSION is serving at http://127.0.0.1:$SITE_PORT"

  # Only the serving release stays: the local target leaves nothing behind.
  local dir
  for dir in "$releases"/*; do
    [ "$dir" = "$target" ] || { step "removing ${dir##*/}"; rm -rf "$dir"; }
  done
  find "$SITELINE_HOME/packages" -type f ! -name "$RELEASE_SHA256.zip" -delete
  # The site switched: database copies from earlier refreshes are no longer used.
  if [ -n "${DB_CURRENT:-}" ]; then
    bash "$(dirname "$0")/local-refresh.sh" prune || step "warning: could not drop previous database copies"
  fi
}

remove() {
  step "stopping the site"
  stop_pid "$pidfile" 20
  rm -rf "$releases" "$SITELINE_HOME/packages" "$SITELINE_HOME/current" "$portfile" "$startfile" "$shared/app.env" \
    "$shared/app.env.new"
  step "site removed"
}

case "${1:-}" in
  deploy) deploy ;;
  remove) remove ;;
  *) fail "usage: local-release.sh deploy|remove" ;;
esac
