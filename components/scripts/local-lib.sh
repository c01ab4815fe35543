# Shared by the local target's scripts: logging, process control and health checks. Sourced, not run.
# shellcheck shell=bash

step() { printf '[siteline %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { printf '[siteline] error: %s\n' "$*" >&2; exit 1; }

refuse_root() {
  if [ "$(id -u)" -eq 0 ]; then
    fail "the local target runs as a normal user (PostgreSQL refuses to run as root); run pulumi as your own user"
  fi
}

# pid_alive FILE: true when FILE names a running process.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# stop_pid FILE [SECONDS]: TERM the process, wait for it, KILL it if it lingers, remove FILE.
stop_pid() {
  local file=$1 wait_for=${2:-20} pid i
  if pid_alive "$file"; then
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_for * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

# wait_port PORT SECONDS: true once something accepts TCP connections on 127.0.0.1:PORT.
wait_port() {
  python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# healthy URL VERSION SECONDS: true once URL answers 200 and reports VERSION as its release.
healthy() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, time, urllib.request
url, version, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
last = "no answer"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            body = json.loads(answer.read() or b"{}")
            if answer.status == 200 and body.get("release", version) == version:
                sys.exit(0)
            last = f"HTTP {answer.status}, release {body.get('release')}"
    except Exception as error:  # any failure means not healthy yet
        last = str(error)[:200]
    time.sleep(0.2)
print(f"health check {url} failed: {last}", file=sys.stderr)
sys.exit(1)
PY
}
