#!/usr/bin/env bash
# The vps target's blue/green release, run as root over SSH.
# `deploy` reads the site's environment file on stdin (it holds secrets: never on a command line,
# never printed), verifies the staged package against its sha256, unpacks it to releases/<version>,
# migrates, starts the idle colour, health-checks it on its own port, switches nginx's upstream with
# a graceful reload, drains and stops the old colour, and keeps the last KEEP releases.
# Until the switch nothing touches the serving colour, so any failure leaves it serving; a failure
# after the switch (nginx reload, the check through nginx) switches nginx back first.
# `remove` stops both colours and removes every release.
set -euo pipefail
# shellcheck source=vps-lib.sh
. "$(dirname "$0")/vps-lib.sh"

: "${APP_USER:?}" "${BASE:?}" "${BLUE_PORT:?}" "${GREEN_PORT:?}"
STATE=/etc/siteline
UPSTREAM=/etc/nginx/siteline-upstream.conf

port_of() { if [ "$1" = blue ]; then echo "$BLUE_PORT"; else echo "$GREEN_PORT"; fi; }
other() { if [ "$1" = blue ]; then echo green; else echo blue; fi; }

# nginx_workers: the PIDs of nginx's worker processes now; after a reload, the ones it retires.
# "proces[s]": this script's own command line holds the pattern, and must not match it.
nginx_workers() { pgrep -f 'nginx: worker proces[s]' | tr '\n' ' ' || true; }

# wait_for_drain SECONDS PID…: the workers from before a reload finishing what they started. `systemctl
# reload nginx` only signals the master, so "no worker shutting down yet" does not mean drained: wait
# for these PIDs to exit (the master starts the new workers before it retires the old ones).
wait_for_drain() {
  local limit=$1 deadline=$((SECONDS + $1)) pid
  shift
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        step "nginx workers still draining after $limit s; going on anyway"
        return
      fi
      sleep 0.2
    done
  done
}

fetch_package() {
  local package=$1 actual
  if [ -s "$package" ] && [ "$(sha256sum "$package" | cut -d' ' -f1)" = "$SHA256" ]; then
    return
  fi
  [ -e "$STAGED" ] || fail "the package is not staged at $STAGED; nothing changed"
  if [[ $STAGED == *.url ]]; then
    local url
    url=$(head -n 1 "$STAGED")
    step "downloading $url"
    curl -fsSL --proto =https --retry 3 -o "$package.part" "$url" || fail "could not download $url; nothing changed"
  else
    cp "$STAGED" "$package.part"
  fi
  # The copy is root's: checking it (not the staged file its owner could still change) closes the gap.
  actual=$(sha256sum "$package.part" | cut -d' ' -f1)
  if [ "$actual" != "$SHA256" ]; then
    rm -f "$package.part"
    fail "the package has sha256 $actual, expected $SHA256; nothing changed, ${SERVING:-no release} keeps serving"
  fi
  mv -f "$package.part" "$package"
}

unpack() {
  local package=$1 target=$2
  [ "$(cat "$target/.siteline-sha256" 2>/dev/null)" != "$SHA256" ] || return 0
  if [ "$SERVING" = "$VERSION" ]; then
    fail "release $VERSION is serving with different contents; give the new package a new version"
  fi
  step "unpacking $VERSION into $target"
  rm -rf "$target.new"
  mkdir -p "$target.new"
  python3 -m zipfile -e "$package" "$target.new"
  echo "$SHA256" >"$target.new/.siteline-sha256"
  # Read-only to the app user: a release is immutable on the server too.
  chown -R root:root "$target.new"
  chmod -R u=rwX,go=rX "$target.new"
  rm -rf "$target"
  mv "$target.new" "$target"
}

prune() {
  local keep=$1 target=$2 kept=0 dir
  local -a keep_sha=()
  while IFS= read -r dir; do
    dir=${dir%/}
    if [ "$dir" = "$target" ] || [ "$kept" -lt "$keep" ]; then
      kept=$((kept + 1))
      keep_sha+=("$(cat "$dir/.siteline-sha256" 2>/dev/null || true)")
      continue
    fi
    step "removing old release ${dir##*/}"
    rm -rf "$dir"
  done < <(ls -1dt "$BASE"/releases/*/ 2>/dev/null)
  local package name
  for package in "$BASE"/packages/*.zip; do
    [ -e "$package" ] || continue
    name=${package##*/}
    [[ " ${keep_sha[*]} " == *" ${name%.zip} "* ]] || rm -f "$package"
  done
}

# switch_back COLOUR REASON: after the switch, the new colour failed. Put the previous upstream back,
# reload nginx, stop COLOUR once nginx's workers are done with it, and fail; `active` still names
# the old colour, so the next release goes to COLOUR again and never stops the one serving.
switch_back() {
  local colour=$1 reason=$2
  step "switching nginx back: $reason"
  install_file "$UPSTREAM" root:root 644 <<<"$PREVIOUS_UPSTREAM"
  local workers
  workers=$(nginx_workers)
  if ! systemctl reload nginx; then
    # nginx may still send visitors to COLOUR: leave it running rather than take the site down.
    fail "$reason; switching nginx back failed too (systemctl status nginx), siteline@$colour is left running"
  fi
  # shellcheck disable=SC2086 # one PID per word
  wait_for_drain "$DRAIN_TIMEOUT" $workers
  systemctl stop "siteline@$colour" || true
  fail "$reason; nginx is switched back and ${SERVING:-no release} keeps serving"
}

deploy() {
  require_root
  : "${VERSION:?}" "${SHA256:?}" "${STAGED:?}" "${SITE_START:?}" "${SITE_MIGRATE:?}" "${HEALTH_PATH:?}"
  : "${HTTP_PORT:?}" "${KEEP:?}" "${HEALTH_TIMEOUT:?}" "${DRAIN_TIMEOUT:?}"
  if [ ! -d "$STATE" ] || [ ! -f "$UPSTREAM" ]; then
    fail "the server is not bootstrapped ($STATE or $UPSTREAM is missing)"
  fi
  exec 9>"$STATE/.release.lock"
  # Wait a while: after a dropped SSH connection the previous run may still be finishing.
  flock -w 120 9 || fail "another release is still running on this server after 120 s"

  local incoming run
  incoming=$(mktemp "$STATE/.incoming.XXXXXX")
  run=$(mktemp "$STATE/.run.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the paths are local to this function
  trap "rm -f '$incoming' '$run'" EXIT
  cat >"$incoming"
  [ -s "$incoming" ] || fail "no environment file on stdin"

  local target="$BASE/releases/$VERSION" active="" identity="$VERSION $SHA256"
  [ ! -s "$STATE/active" ] || active=$(cat "$STATE/active")
  # nginx's upstream is the truth: a release killed after the switch but before recording it leaves
  # `active` naming the colour nginx no longer serves, and the idle colour must never be that one.
  if [ -n "$active" ] && grep -qx "server 127.0.0.1:$(port_of "$(other "$active")");" "$UPSTREAM" &&
     systemctl is-active --quiet "siteline@$(other "$active")"; then
    step "nginx serves $(other "$active"), not $active: an earlier release stopped before recording the switch"
    # nginx no longer sends it anything: the colour `active` named is a leftover now.
    systemctl disable --quiet --now "siteline@$active"
    active=$(other "$active")
    printf '%s\n' "$active" >"$STATE/active.new"
    mv -f "$STATE/active.new" "$STATE/active"
  fi
  SERVING=""
  [ -z "$active" ] || SERVING=$(cut -d' ' -f1 "$STATE/$active.release" 2>/dev/null || true)
  printf '#!/bin/bash\n# Siteline release %s (sha256 %s)\ncd %q || exit 1\nexec bash -c %q\n' \
    "$VERSION" "$SHA256" "$target" "$SITE_START" >"$run"
  local nginx_url="http://${LISTEN_ADDRESS:-127.0.0.1}:$HTTP_PORT$HEALTH_PATH"

  if [ -n "$active" ] && [ "$(cat "$STATE/$active.release" 2>/dev/null)" = "$identity" ] &&
     cmp -s "$incoming" "$STATE/$active.env" && cmp -s "$run" "$STATE/$active.run" &&
     grep -qx "server 127.0.0.1:$(port_of "$active");" "$UPSTREAM" &&
     systemctl is-active --quiet "siteline@$active" && healthy "$nginx_url" "$VERSION" 5 2>/dev/null; then
    rm -f "$STAGED"
    step "release $VERSION is already serving ($active) with this configuration; nothing to do"
    return
  fi

  local idle port
  idle=$(other "${active:-green}")
  port=$(port_of "$idle")
  step "release $VERSION goes to the idle colour $idle (127.0.0.1:$port); ${SERVING:-nothing} is serving${active:+ from $active}"

  step "verifying the package sha256"
  fetch_package "$BASE/packages/$SHA256.zip"
  rm -f "$STAGED"
  unpack "$BASE/packages/$SHA256.zip" "$target"
  touch "$target"

  if systemctl is-active --quiet "siteline@$idle"; then
    step "stopping a leftover $idle instance"
    systemctl stop "siteline@$idle"
  fi
  install_file "$STATE/$idle.env" "root:$APP_USER" 640 <"$incoming"
  install_file "$STATE/$idle.run" "root:$APP_USER" 640 <"$run"
  install_file "$STATE/$idle.release" root:root 644 <<<"$identity"

  step "running migrations"
  # shellcheck disable=SC2016 # the inner script expands its own positional arguments
  if ! runuser -u "$APP_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$BASE" LANG=C.UTF-8 \
      bash -c 'set -a; . "$1"; set +a; cd "$2" && exec bash -c "$3"' _ "$STATE/$idle.env" "$target" "$SITE_MIGRATE"; then
    fail "migrations of $VERSION failed; ${SERVING:-no release} keeps serving"
  fi

  step "starting $VERSION as siteline@$idle"
  systemctl reset-failed "siteline@$idle" 2>/dev/null || true
  local started
  started=$(date +%s)
  systemctl start "siteline@$idle"
  if ! healthy "http://127.0.0.1:$port$HEALTH_PATH" "$VERSION" "$HEALTH_TIMEOUT"; then
    journalctl -u "siteline@$idle" --since "@$started" -n 15 --no-pager -o cat >&2 || true
    systemctl stop "siteline@$idle"
    fail "release $VERSION failed its health check on 127.0.0.1:$port$HEALTH_PATH; ${SERVING:-no release} keeps serving"
  fi
  step "siteline@$idle is healthy"

  step "switching nginx to $idle"
  PREVIOUS_UPSTREAM=$(cat "$UPSTREAM")
  install_file "$UPSTREAM" root:root 644 <<<"server 127.0.0.1:$port;"
  if ! nginx -t -q 2>/dev/null; then
    install_file "$UPSTREAM" root:root 644 <<<"$PREVIOUS_UPSTREAM"
    systemctl stop "siteline@$idle"
    fail "nginx refused the switch to $idle (nginx -t); ${SERVING:-no release} keeps serving"
  fi
  # A graceful reload: new workers take new connections, old ones finish what they started.
  # A failed reload or check below switches nginx back (switch_back) before `active` moves.
  local workers
  workers=$(nginx_workers)
  systemctl reload nginx || switch_back "$idle" "nginx did not reload with $idle as its upstream"
  # Old workers may still answer from the old release for a moment: that is waited for. An error answer
  # is not: the new release fails through nginx (proxy headers, Host), so visitors get errors; give up
  # after a few instead of serving them errors for the whole timeout.
  healthy "$nginx_url" "$VERSION" 30 3 ||
    switch_back "$idle" "release $VERSION is healthy on 127.0.0.1:$port but not through nginx ($nginx_url)"
  printf '%s\n' "$idle" >"$STATE/active.new"
  mv -f "$STATE/active.new" "$STATE/active"
  ln -sfn "$target" "$BASE/current.new"
  mv -T "$BASE/current.new" "$BASE/current"
  systemctl enable --quiet "siteline@$idle"

  if [ -n "$active" ]; then
    step "draining $active, then stopping it"
    # shellcheck disable=SC2086 # one PID per word
    wait_for_drain "$DRAIN_TIMEOUT" $workers
    systemctl disable --quiet --now "siteline@$active"
  fi
  prune "$KEEP" "$target"
  drop_old_copies
  step "release $VERSION is serving from $idle"
}

# drop_old_copies: after a successful switch, the refresh copies (DB_NAME_r*) the site no longer uses.
# Never DB_NAME itself nor DB_CURRENT; a failure only warns, the release itself succeeded.
drop_old_copies() {
  [ -n "${DB_NAME:-}" ] && [ -n "${DB_CURRENT:-}" ] && [ -n "${DB_PORT:-}" ] || return 0
  local copy
  while IFS= read -r copy; do
    if [ -z "$copy" ] || [ "$copy" = "$DB_CURRENT" ] || [ "$copy" = "$DB_NAME" ]; then continue; fi
    step "dropping the previous database copy $copy"
    (cd / && runuser -u postgres -- psql -p "$DB_PORT" -X -q -d postgres -v ON_ERROR_STOP=1 -v copy="$copy" \
      <<<'DROP DATABASE IF EXISTS :"copy" WITH (FORCE);') || step "warning: could not drop $copy"
  done < <(cd / && runuser -u postgres -- psql -p "$DB_PORT" -X -At -d postgres -v prefix="${DB_NAME}_r" \
             <<<"SELECT datname FROM pg_database WHERE left(datname, length(:'prefix')) = :'prefix'")
}

remove() {
  require_root
  local colour
  for colour in blue green; do
    step "stopping siteline@$colour"
    systemctl disable --quiet --now "siteline@$colour" 2>/dev/null || true
    rm -f "$STATE/$colour.env" "$STATE/$colour.run" "$STATE/$colour.release"
  done
  rm -f "$STATE/active" "$STATE/.release.lock" "$BASE/current"
  step "removing releases and packages"
  rm -rf "${BASE:?}"/releases/* "${BASE:?}"/packages/* "${BASE:?}"/staging/*
  step "site removed"
}

case "${1:-}" in
  deploy) deploy ;;
  remove) remove ;;
  *) fail "usage: vps-release.sh deploy|remove" ;;
esac
