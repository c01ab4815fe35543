#!/usr/bin/env bash
# The local target's mail sink: every message the site sends lands as a file, nothing leaves the machine.
set -euo pipefail
# shellcheck source=local-lib.sh
. "$(dirname "$0")/local-lib.sh"

: "${SITELINE_HOME:?}" "${MAIL_PORT:?}" "${SITELINE_BIN:?}"
PATH="$SITELINE_BIN:$PATH"
pidfile="$SITELINE_HOME/mail.pid"
# What the running sink was started with: a create with new inputs (there is no update) must replace it.
portfile="$SITELINE_HOME/mail.port"
scriptsfile="$SITELINE_HOME/mail.scripts"

case "${1:-}" in
  up)
    refuse_root
    mkdir -p "$SITELINE_HOME/mail"
    chmod 700 "$SITELINE_HOME" "$SITELINE_HOME/mail"
    if pid_alive "$pidfile"; then
      # No record (a sink started before ports were recorded): it runs on the port it was given, MAIL_PORT.
      running_port=$(cat "$portfile" 2>/dev/null || echo "$MAIL_PORT")
      running_scripts=$(cat "$scriptsfile" 2>/dev/null || true)
      if [ "$running_port" = "$MAIL_PORT" ] && [ "$running_scripts" = "${SITELINE_SCRIPTS:-}" ] &&
         wait_port "$MAIL_PORT" 1; then
        step "mail sink already listening on 127.0.0.1:$MAIL_PORT"
        exit 0
      fi
      # Refused before stopping anything, so a taken port leaves the running sink as it was.
      [ "$running_port" = "$MAIL_PORT" ] || refuse_taken_port "$MAIL_PORT" hosting.local.mailPort
      step "stopping the mail sink on 127.0.0.1:${running_port:-?} (its port or the scripts changed)"
      stop_pid "$pidfile" 10
    fi
    refuse_taken_port "$MAIL_PORT" hosting.local.mailPort
    step "starting the mail sink on 127.0.0.1:$MAIL_PORT, writing to $SITELINE_HOME/mail"
    setsid python3 "$(dirname "$0")/mailsink.py" --listen 127.0.0.1 --port "$MAIL_PORT" \
      --dir "$SITELINE_HOME/mail" --pidfile "$pidfile" </dev/null >>"$SITELINE_HOME/mail.log" 2>&1 &
    wait_port "$MAIL_PORT" 15 || fail "the mail sink did not start; see $SITELINE_HOME/mail.log"
    for _ in $(seq 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
    echo "$MAIL_PORT" >"$portfile"
    echo "${SITELINE_SCRIPTS:-}" >"$scriptsfile"
    ;;
  down)
    step "stopping the mail sink (messages kept in $SITELINE_HOME/mail)"
    stop_pid "$pidfile" 10
    rm -f "$portfile" "$scriptsfile"
    ;;
  *) fail "usage: local-mail.sh up|down" ;;
esac
