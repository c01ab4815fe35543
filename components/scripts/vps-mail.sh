#!/usr/bin/env bash
# The vps target's mail sink for smtp.mode sink: every message the site sends lands as a file in
# BASE/shared/mail and nothing leaves the server. `up` installs and starts it, `down` removes it.
set -euo pipefail
# shellcheck source=vps-lib.sh
. "$(dirname "$0")/vps-lib.sh"

: "${APP_USER:?}" "${BASE:?}" "${MAIL_PORT:?}"
UNIT=/etc/systemd/system/siteline-mailsink.service
PROGRAM=/usr/local/lib/siteline/mailsink.py

up() {
  require_root
  : "${STAGED:?}" "${MAILSINK_SHA256:?}"
  local actual
  actual=$(sha256sum "$STAGED" 2>/dev/null | cut -d' ' -f1 || true)
  [ "$actual" = "$MAILSINK_SHA256" ] || fail "$STAGED has sha256 '${actual:-missing}', expected $MAILSINK_SHA256"
  step "mail sink on 127.0.0.1:$MAIL_PORT, writing to $BASE/shared/mail"
  install -d -o "$APP_USER" -g "$APP_USER" -m 750 "$BASE/shared/mail"
  CHANGED=0
  install_file "$PROGRAM" root:root 644 <"$STAGED"
  install_file "$UNIT" root:root 644 <<UNIT
# Managed by Siteline (vps target): catches the site's mail when smtp.mode is sink.
[Unit]
Description=Siteline mail sink
After=network.target

[Service]
User=$APP_USER
Group=$APP_USER
ExecStart=/usr/bin/python3 $PROGRAM --listen 127.0.0.1 --port $MAIL_PORT --dir $BASE/shared/mail
Restart=on-failure
UMask=0027
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full
ProtectHome=true

[Install]
WantedBy=multi-user.target
UNIT
  if [ "$CHANGED" = 1 ]; then
    systemctl daemon-reload
    systemctl enable --quiet siteline-mailsink
    systemctl restart siteline-mailsink
  else
    systemctl enable --quiet --now siteline-mailsink
  fi
  local _
  for _ in $(seq 50); do
    (: </dev/tcp/127.0.0.1/"$MAIL_PORT") 2>/dev/null && { step "mail sink ready"; return; }
    sleep 0.2
  done
  fail "the mail sink is not listening on 127.0.0.1:$MAIL_PORT; see journalctl -u siteline-mailsink"
}

down() {
  require_root
  step "removing the mail sink (messages stay in $BASE/shared/mail until the bootstrap is removed)"
  systemctl disable --quiet --now siteline-mailsink 2>/dev/null || true
  rm -f "$UNIT" "$PROGRAM"
  systemctl daemon-reload
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) fail "usage: vps-mail.sh up|down" ;;
esac
