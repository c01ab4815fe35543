#!/usr/bin/env bash
# The vps target's server setup, run as root over SSH: `up` installs nginx, PostgreSQL, the app user,
# the directory layout, the blue/green systemd template unit, the nginx site and the nightly backup;
# `down` removes them and keeps the database unless DB_RETAIN is false. Both can run any number of
# times. `up` reads the database password on stdin (never on a command line).
set -euo pipefail
# shellcheck source=vps-lib.sh
. "$(dirname "$0")/vps-lib.sh"

: "${APP_USER:?}" "${BASE:?}" "${SSH_USER:?}" "${HTTP_PORT:?}" "${SERVER_NAME:?}" "${BLUE_PORT:?}"
: "${GREEN_PORT:?}" "${DB_PORT:?}" "${DB_NAME:?}" "${DB_VERSION:?}" "${DB_RETAIN:?}" "${BACKUP_DAYS:?}"
LISTEN_ADDRESS=${LISTEN_ADDRESS:-}
PACKAGES=(nginx "postgresql-$DB_VERSION" python3 python3-psycopg gunicorn curl ca-certificates)
UNIT=/etc/systemd/system/siteline@.service
SITE=/etc/nginx/sites-available/siteline
UPSTREAM=/etc/nginx/siteline-upstream.conf
LIBEXEC=/usr/local/lib/siteline

psql_admin() { cd / && runuser -u postgres -- psql -p "$DB_PORT" -X -q -v ON_ERROR_STOP=1 "$@"; }

install_packages() {
  local missing=() package
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    step "packages present: ${PACKAGES[*]}"
    return
  fi
  step "apt-get update"
  apt-get update -qq
  if ! apt-cache show "postgresql-$DB_VERSION" >/dev/null 2>&1; then
    fail "postgresql-$DB_VERSION is not in this server's apt sources; set database.version to the version the distribution ships (Debian 12: 15, Ubuntu 24.04: 16) or add apt.postgresql.org"
  fi
  step "installing ${missing[*]}"
  # Services must not start with the packages' defaults (nginx on port 80 with its default site,
  # PostgreSQL on 5432): they start below, configured.
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard"
    chmod 755 "$guard"
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/siteline-apt.log 2>&1; then
    [ -z "$guard" ] || rm -f "$guard"
    tail -n 30 /tmp/siteline-apt.log >&2
    fail "apt-get install ${missing[*]} failed"
  fi
  [ -z "$guard" ] || rm -f "$guard"
}

layout() {
  if ! id -u "$APP_USER" >/dev/null 2>&1; then
    step "creating the app user $APP_USER"
    useradd --system --user-group --home-dir "$BASE" --no-create-home --shell /usr/sbin/nologin "$APP_USER"
  fi
  step "layout under $BASE"
  install -d -o root -g root -m 755 "$BASE" "$BASE/releases" "$LIBEXEC"
  install -d -o root -g root -m 700 "$BASE/packages"
  install -d -o "$SSH_USER" -m 700 "$BASE/staging"
  install -d -o "$APP_USER" -g "$APP_USER" -m 750 "$BASE/shared"
  install -d -o postgres -g postgres -m 700 "$BASE/backups"
  # Env files and run scripts live here: root-owned, readable by the app group, never writable by it.
  install -d -o root -g "$APP_USER" -m 750 /etc/siteline
}

database() {
  local password=$1 cluster="/etc/postgresql/$DB_VERSION/main"
  if [ ! -d "$cluster" ]; then
    step "creating the PostgreSQL $DB_VERSION cluster"
    pg_createcluster "$DB_VERSION" main --port "$DB_PORT" >/dev/null
  fi
  local before after
  before=$(pg_conftool -s "$DB_VERSION" main show all 2>/dev/null | grep -E '^(port|listen_addresses) ' || true)
  pg_conftool "$DB_VERSION" main set port "$DB_PORT"
  # Loopback only (127.0.0.1 and ::1): the database is never reachable from outside the server.
  pg_conftool "$DB_VERSION" main set listen_addresses localhost
  after=$(pg_conftool -s "$DB_VERSION" main show all 2>/dev/null | grep -E '^(port|listen_addresses) ' || true)
  systemctl enable --quiet postgresql
  if [ "$before" != "$after" ] && systemctl is-active --quiet "postgresql@$DB_VERSION-main"; then
    step "restarting PostgreSQL on 127.0.0.1:$DB_PORT"
    systemctl restart "postgresql@$DB_VERSION-main"
  else
    step "starting PostgreSQL on 127.0.0.1:$DB_PORT"
    systemctl start "postgresql@$DB_VERSION-main"
  fi
  local i
  for i in $(seq 60); do
    pg_isready -q -h 127.0.0.1 -p "$DB_PORT" && break
    [ "$i" -lt 60 ] || fail "PostgreSQL did not come up on 127.0.0.1:$DB_PORT; see journalctl -u postgresql@$DB_VERSION-main"
    sleep 0.5
  done
  step "database role $APP_USER and database $DB_NAME"
  # The password may have been rotated in config: set it every time, through stdin. What psql sends is
  # its SCRAM verifier, never the password: an error echoing the statement (psql, the server log, the
  # command's output in the Pulumi log) cannot show it.
  local verifier
  verifier=$(scram_verifier <<<"$password")
  psql_admin <<SQL
SELECT 'CREATE ROLE "$APP_USER" LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') \gexec
ALTER ROLE "$APP_USER" LOGIN PASSWORD '$verifier';
SELECT 'CREATE DATABASE "$DB_NAME" OWNER "$APP_USER"' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

# scram_verifier < PASSWORD: PostgreSQL's SCRAM-SHA-256 verifier of the password (RFC 7677, as
# PostgreSQL stores it), which ALTER ROLE … PASSWORD stores as is.
# shellcheck disable=SC2016 # a Python program: nothing in it is for the shell to expand
scram_verifier() {
  python3 -c '
import base64, hashlib, hmac, os, sys
password = sys.stdin.readline().rstrip("\n").encode()
salt, rounds = os.urandom(16), 4096
salted = hashlib.pbkdf2_hmac("sha256", password, salt, rounds)
client_key = hmac.new(salted, b"Client Key", "sha256").digest()
server_key = hmac.new(salted, b"Server Key", "sha256").digest()
b64 = lambda raw: base64.b64encode(raw).decode()
print(f"SCRAM-SHA-256${rounds}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")
'
}

units() {
  step "systemd units: siteline@blue (127.0.0.1:$BLUE_PORT), siteline@green (127.0.0.1:$GREEN_PORT)"
  CHANGED=0
  install_file "$UNIT" root:root 644 <<UNIT
# Managed by Siteline (vps target): one instance per colour, started and stopped by releases.
[Unit]
Description=Siteline site (%i)
After=network.target postgresql.service

[Service]
Type=simple
User=$APP_USER
Group=$APP_USER
EnvironmentFile=/etc/siteline/%i.env
ExecStart=/bin/bash /etc/siteline/%i.run
KillMode=mixed
TimeoutStopSec=30
Restart=on-failure
RestartSec=2
UMask=0027
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full
ProtectHome=true

[Install]
WantedBy=multi-user.target
UNIT
  local colour port
  for colour in blue green; do
    port=$BLUE_PORT
    [ "$colour" = blue ] || port=$GREEN_PORT
    install -d -m 755 "/etc/systemd/system/siteline@$colour.service.d"
    install_file "/etc/systemd/system/siteline@$colour.service.d/port.conf" root:root 644 <<UNIT
[Service]
Environment=PORT=$port
UNIT
  done
  install_file "$LIBEXEC/backup.sh" root:root 755 <<BACKUP
#!/bin/bash
# Nightly dump of $DB_NAME; dumps older than $BACKUP_DAYS days are removed.
set -euo pipefail
pg_dump -p $DB_PORT -Fc -f "$BASE/backups/$DB_NAME-\$(date -u +%Y%m%dT%H%M%SZ).dump" "$DB_NAME"
find "$BASE/backups" -name '$DB_NAME-*.dump' -mtime +$BACKUP_DAYS -delete
BACKUP
  install_file /etc/systemd/system/siteline-backup.service root:root 644 <<UNIT
[Unit]
Description=Siteline database backup
After=postgresql.service

[Service]
Type=oneshot
User=postgres
ExecStart=$LIBEXEC/backup.sh
UNIT
  install_file /etc/systemd/system/siteline-backup.timer root:root 644 <<UNIT
[Unit]
Description=Nightly Siteline database backup

[Timer]
OnCalendar=daily
RandomizedDelaySec=1h
Persistent=true

[Install]
WantedBy=timers.target
UNIT
  if [ "$CHANGED" = 1 ]; then
    systemctl daemon-reload
  fi
  systemctl enable --quiet --now siteline-backup.timer
}

nginx_site() {
  step "nginx site on ${LISTEN_ADDRESS:-*}:$HTTP_PORT for $SERVER_NAME"
  local active=blue port listen
  [ ! -s /etc/siteline/active ] || active=$(cat /etc/siteline/active)
  port=$BLUE_PORT
  [ "$active" = blue ] || port=$GREEN_PORT
  CHANGED=0
  # The release switches colours by rewriting this include; here it follows the active colour.
  install_file "$UPSTREAM" root:root 644 <<<"server 127.0.0.1:$port;"
  if [ -n "$LISTEN_ADDRESS" ]; then
    listen="listen $LISTEN_ADDRESS:$HTTP_PORT default_server;"
  else
    listen="listen $HTTP_PORT default_server;
    listen [::]:$HTTP_PORT default_server;"
  fi
  install_file "$SITE" root:root 644 <<SITE
# Managed by Siteline (vps target); the next pulumi up overwrites changes.
upstream siteline_app {
    include $UPSTREAM;
}

server {
    $listen
    server_name $SERVER_NAME;
    client_max_body_size 1m;

    location / {
        proxy_pass http://siteline_app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
    }
}
SITE
  ln -sfn "$SITE" /etc/nginx/sites-enabled/siteline
  # The stock site would also claim port 80 as the default server.
  if [ -L /etc/nginx/sites-enabled/default ]; then
    rm -f /etc/nginx/sites-enabled/default
    CHANGED=1
  fi
  nginx -t -q || fail "nginx refuses the generated configuration (see nginx -t)"
  systemctl enable --quiet nginx
  if ! systemctl is-active --quiet nginx; then
    systemctl start nginx
  elif [ "$CHANGED" = 1 ]; then
    systemctl reload nginx
  fi
}

up() {
  require_root
  local password
  IFS= read -r password || true
  [[ $password =~ ^[A-Za-z0-9]{16,}$ ]] || fail "expected the database password (16+ letters and digits) on stdin"
  install_packages
  layout
  database "$password"
  units
  nginx_site
  step "bootstrap done"
}

down() {
  require_root
  step "removing the systemd units"
  local unit
  for unit in siteline@blue.service siteline@green.service siteline-backup.timer siteline-backup.service; do
    systemctl disable --quiet --now "$unit" 2>/dev/null || true
  done
  rm -rf "$UNIT" /etc/systemd/system/siteline@blue.service.d /etc/systemd/system/siteline@green.service.d \
    /etc/systemd/system/siteline-backup.service /etc/systemd/system/siteline-backup.timer "$LIBEXEC"
  systemctl daemon-reload

  step "removing the nginx site"
  rm -f /etc/nginx/sites-enabled/siteline "$SITE" "$UPSTREAM"
  if systemctl is-active --quiet nginx; then
    systemctl reload nginx
  fi

  if [ "$DB_RETAIN" = false ]; then
    if systemctl is-active --quiet "postgresql@$DB_VERSION-main"; then
      step "dropping database $DB_NAME, its refresh copies and role $APP_USER (database.retainOnDestroy is false)"
      # The copies (DB_NAME_r*) are owned by the app role: they go first, or the role cannot be dropped.
      psql_admin -d postgres -v prefix="${DB_NAME}_r" <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname) FROM pg_database
 WHERE left(datname, length(:'prefix')) = :'prefix' \gexec
SQL
      psql_admin -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" -c "DROP ROLE IF EXISTS \"$APP_USER\""
    fi
    rm -rf "$BASE"
  else
    step "database $DB_NAME and its backups in $BASE/backups are kept (database.retainOnDestroy)"
    rm -rf "$BASE/releases" "$BASE/packages" "$BASE/staging" "$BASE/shared" "$BASE/current"
  fi
  rm -rf /etc/siteline
  if id -u "$APP_USER" >/dev/null 2>&1; then
    step "removing the app user $APP_USER"
    userdel "$APP_USER"
  fi
  step "bootstrap removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) fail "usage: vps-bootstrap.sh up|down" ;;
esac
