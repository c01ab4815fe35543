# Shared by the vps target's scripts, which run as root on the server. Sourced (vps.py inlines it
# into each command, so a command never depends on files a previous run left on the server).
# shellcheck shell=bash

step() { printf '[siteline %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() { printf '[siteline] error: %s\n' "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || fail "run as root (hosting.vps.user is not root and sudo -n did not give root)"
}

# install_file PATH OWNER:GROUP MODE < CONTENT: replace PATH atomically when its content or
# metadata differ; sets CHANGED=1 when it did, so callers reload only what changed.
# shellcheck disable=SC2034 # CHANGED is read by the scripts that source this file
CHANGED=0
# shellcheck disable=SC2034
install_file() {
  local path=$1 owner=$2 mode=$3 incoming
  incoming=$(mktemp "$(dirname "$path")/.siteline.XXXXXX")
  cat >"$incoming"
  chown "$owner" "$incoming"
  chmod "$mode" "$incoming"
  if [ -f "$path" ] && cmp -s "$incoming" "$path" &&
     [ "$(stat -c '%U:%G %a' "$path")" = "$(stat -c '%U:%G %a' "$incoming")" ]; then
    rm -f "$incoming"
    return 0
  fi
  mv -f "$incoming" "$path"
  CHANGED=1
}

# healthy URL VERSION SECONDS [ERRORS]: true once URL answers 200 with "release": VERSION in its JSON;
# false after SECONDS, or as soon as ERRORS error answers (4xx/5xx) came back, when ERRORS is given.
healthy() {
  python3 - "$1" "$2" "$3" "${4:-0}" <<'PY'
import json, sys, time, urllib.error, urllib.request
url, version, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
errors_allowed, errors = int(sys.argv[4]), 0
last = "no answer"
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            body = json.loads(answer.read() or b"{}")
            if body.get("release") == version:
                sys.exit(0)
            last = f"HTTP {answer.status} from release {body.get('release')!r}, expected {version!r}"
    except urllib.error.HTTPError as error:
        last = f"HTTP {error.code}: {error.read()[:200].decode(errors='replace')}"
        errors += 1
        if errors_allowed and errors >= errors_allowed:
            break
    except Exception as error:  # refused, reset, timeout: not healthy yet
        last = str(error)[:200]
    if time.monotonic() > deadline:
        break
    time.sleep(0.25)
print(f"health check {url} failed: {last}", file=sys.stderr)
sys.exit(1)
PY
}
