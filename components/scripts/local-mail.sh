#!/usr/bin/env bash
# The local target's mail sink: every message the site sends lands as a file, nothing leaves the machine.
set -euo pipefail
# shellcheck source=local-lib.sh
. "$(dirname "$0")/local-lib.sh"

: "${SITELINE_HOME:?}" "${MAIL_PORT:?}" "${SITELINE_BIN:?}"
PATH="$SITELINE_BIN:$PATH"
pidfile="$SITELINE_HOME/mail.pid"

case "${1:-}" in
  up)
    mkdir -p "$SITELINE_HOME/mail"
    if pid_alive "$pidfile" && wait_port "$MAIL_PORT" 1; then
      step "mail sink already listening on 127.0.0.1:$MAIL_PORT"
      exit 0
    fi
    step "starting the mail sink on 127.0.0.1:$MAIL_PORT, writing to $SITELINE_HOME/mail"
    setsid python3 "$(dirname "$0")/mailsink.py" --listen 127.0.0.1 --port "$MAIL_PORT" \
      --dir "$SITELINE_HOME/mail" --pidfile "$pidfile" </dev/null >>"$SITELINE_HOME/mail.log" 2>&1 &
    wait_port "$MAIL_PORT" 15 || fail "the mail sink did not start; see $SITELINE_HOME/mail.log"
    ;;
  down)
    step "stopping the mail sink (messages kept in $SITELINE_HOME/mail)"
    stop_pid "$pidfile" 10
    ;;
  *) fail "usage: local-mail.sh up|down" ;;
esac
