# Shared by the local target's scripts: logging, process control and health checks. Sourced, not run.
# shellcheck shell=bash

# Everything the scripts create (mail, logs, env files, the cluster) is private to this user from the first run.
umask 077

step() { printf '[siteline %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { printf '[siteline] error: %s\n' "$*" >&2; exit 1; }

refuse_root() {
  if [ "$(id -u)" -eq 0 ]; then
    fail "the local target runs as a normal user (PostgreSQL refuses to run as root); run pulumi as your own user"
  fi
}

# recorded_pid FILE: the process id in FILE, if it holds one.
recorded_pid() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n 1 "$1")
  [[ $pid =~ ^[1-9][0-9]*$ ]] || return 1
  echo "$pid"
}

# pid_alive FILE: true when the process named in FILE, or anything left in its process group, is running.
# The site and the sink start under setsid, so the recorded pid leads a group of its own.
pid_alive() {
  local pid
  pid=$(recorded_pid "$1") || return 1
  kill -0 -- -"$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null
}

# stop_pid FILE [SECONDS]: TERM the process group FILE names, wait for it, KILL what lingers, remove FILE.
# The whole group, not the one pid: a compound start command (`cd x && gunicorn ...`) leaves its leader
# as a shell whose children would otherwise keep running, and keep the port.
stop_pid() {
  local file=$1 wait_for=${2:-20} pid target i
  if pid=$(recorded_pid "$file"); then
    if kill -0 -- -"$pid" 2>/dev/null; then
      target=-$pid
    elif kill -0 "$pid" 2>/dev/null; then
      target=$pid
    fi
    if [ -n "${target:-}" ]; then
      kill -TERM -- "$target" 2>/dev/null || true
      for ((i = 0; i < wait_for * 10; i++)); do
        kill -0 -- "$target" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 -- "$target" 2>/dev/null; then
        step "process group $pid did not stop within ${wait_for}s; killing it"
        kill -KILL -- "$target" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
          kill -0 -- "$target" 2>/dev/null || break
          sleep 0.1
        done
      fi
    fi
  fi
  rm -f "$file"
}

# port_in_use PORT: true when something accepts TCP connections on 127.0.0.1:PORT right now.
port_in_use() {
  python3 - "$1" <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

# refuse_taken_port PORT KEY: fail, naming the config key to change, when PORT is taken by something else.
# Call it only once this stack's own process on PORT (if any) is known not to be the listener.
refuse_taken_port() {
  if port_in_use "$1"; then
    fail "port $1 on 127.0.0.1 is already taken by another program (another stack's site, sink or database?); choose a free port: pulumi config set --path siteline:$2 <port>"
  fi
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

# healthy URL VERSION SECONDS: true once URL answers 200. When the answer is a JSON object with a "release"
# key, that release must be VERSION too (so an old process still answering does not count).
healthy() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, time, urllib.request
url, version, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
last = "no answer"
while time.monotonic() < deadline:
    try:
        timeout = max(0.5, min(2.0, deadline - time.monotonic()))
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status, raw = answer.status, answer.read(65536)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None  # a plain "OK": the status alone decides
        release = body.get("release") if isinstance(body, dict) and "release" in body else version
        if status == 200 and release == version:
            sys.exit(0)
        last = f"HTTP {status}, release {release}"
    except Exception as error:  # any failure means not healthy yet
        last = str(error)[:200]
    time.sleep(0.2)
print(f"health check {url} failed: {last}", file=sys.stderr)
sys.exit(1)
PY
}
