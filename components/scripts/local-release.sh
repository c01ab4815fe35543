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
log="$SITELINE_HOME/site.log"
target="$releases/$RELEASE_VERSION"
health_url="http://127.0.0.1:$SITE_PORT$HEALTH_PATH"

# start_site DIR ENVFILE: run the site's start command from DIR with ENVFILE loaded, detached.
start_site() {
  # shellcheck disable=SC2016 # the inner script expands its own positional arguments
  setsid bash -c 'echo $$ >"$1"; cd "$2"; set -a; . "$3"; set +a; export PORT="$4"; exec bash -c "$5"' \
    _ "$pidfile" "$1" "$2" "$SITE_PORT" "$SITE_START" </dev/null >>"$log" 2>&1 &
  for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
}

fetch_package() {
  local source=$RELEASE_PACKAGE
  mkdir -p "$SITELINE_HOME/packages"
  local copy="$SITELINE_HOME/packages/$RELEASE_SHA256.zip"
  if [ ! -s "$copy" ]; then
    if [[ $source == https://* ]]; then
      step "downloading $source"
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
  local env_new="$shared/app.env.new"
  (umask 077 && cat >"$env_new")

  if [ "$(readlink "$SITELINE_HOME/current" 2>/dev/null)" = "$target" ] &&
     [ "$(cat "$target/.siteline-sha256" 2>/dev/null)" = "$RELEASE_SHA256" ] &&
     cmp -s "$env_new" "$shared/app.env" && pid_alive "$pidfile" && healthy "$health_url" "$RELEASE_VERSION" 2; then
    rm -f "$env_new"
    step "release $RELEASE_VERSION is already serving with this configuration; nothing to do"
    return
  fi

  step "verifying package sha256"
  local package
  package=$(fetch_package)

  if [ "$(cat "$target/.siteline-sha256" 2>/dev/null)" != "$RELEASE_SHA256" ]; then
    step "unpacking release $RELEASE_VERSION"
    rm -rf "$target.new"
    mkdir -p "$target.new"
    python3 -m zipfile -e "$package" "$target.new"
    echo "$RELEASE_SHA256" >"$target.new/.siteline-sha256"
    if [ "$(readlink "$SITELINE_HOME/current" 2>/dev/null)" = "$target" ]; then
      fail "release $RELEASE_VERSION is serving with different contents ($target); give the new package a new version"
    fi
    rm -rf "$target"
    mv "$target.new" "$target"
  fi

  step "running migrations"
  # shellcheck source=/dev/null
  if ! (cd "$target" && set -a && . "$env_new" && set +a && bash -c "$SITE_MIGRATE"); then
    rm -f "$env_new"
    fail "migrations of $RELEASE_VERSION failed; the previous release keeps serving"
  fi

  # One port locally, so the switch is stop-then-start; a failed start puts the old release back.
  local previous
  previous=$(readlink "$SITELINE_HOME/current" 2>/dev/null || true)
  if pid_alive "$pidfile"; then
    step "stopping ${previous##*/}"
    stop_pid "$pidfile" 20
  fi
  step "starting $RELEASE_VERSION on 127.0.0.1:$SITE_PORT"
  start_site "$target" "$env_new"
  if ! healthy "$health_url" "$RELEASE_VERSION" "$HEALTH_TIMEOUT"; then
    stop_pid "$pidfile" 10
    if [ -n "$previous" ] && [ -d "$previous" ] && [ -f "$shared/app.env" ]; then
      step "health check failed; restarting ${previous##*/}"
      start_site "$previous" "$shared/app.env"
      healthy "$health_url" "${previous##*/}" "$HEALTH_TIMEOUT" || step "warning: ${previous##*/} did not come back healthy"
    fi
    rm -f "$env_new"
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
}

remove() {
  step "stopping the site"
  stop_pid "$pidfile" 20
  rm -rf "$releases" "$SITELINE_HOME/packages" "$SITELINE_HOME/current" "$shared/app.env" "$shared/app.env.new"
  step "site removed"
}

case "${1:-}" in
  deploy) deploy ;;
  remove) remove ;;
  *) fail "usage: local-release.sh deploy|remove" ;;
esac
